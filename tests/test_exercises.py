"""Every tutorial's exercises have solutions in tutorials/solutions/, and each solution checks its answer."""

import functools
import importlib.util
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tutorials"
TUTORIALS = sorted(ROOT.glob("[0-9][0-9]_*.py"))
NEEDS_TORCH = ("08_", "10_")


def _solutions(tutorial):
    return ROOT / "solutions" / f"s{tutorial.name}"


@functools.lru_cache(maxsize=None)
def _load(path):
    """The solutions module (loaded once per session, so that exercises may share what they compute)."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _numbers(tutorial):
    """The exercises' numbers: the '# 1. ...' lines after the tutorial's '## Exercises' heading."""
    return [int(n) for n in re.findall(r"^# (\d+)\. ", tutorial.read_text().split("## Exercises", 1)[-1], re.M)]


def _cases():
    for tutorial in TUTORIALS:
        for i in _numbers(tutorial):
            yield pytest.param(tutorial, i, id=f"{tutorial.stem[:2]}-{i}")


def test_every_tutorial_has_exercises_and_links_its_solutions():
    for tutorial in TUTORIALS:
        text = tutorial.read_text()
        assert "## Exercises" in text, tutorial.name
        assert f"solutions/{_solutions(tutorial).name}" in text, f"{tutorial.name} does not link its solutions"
        assert _solutions(tutorial).is_file(), f"{tutorial.name} has no solutions file"
        numbers = _numbers(tutorial)
        assert numbers == list(range(1, len(numbers) + 1)) and len(numbers) >= 2, (tutorial.name, numbers)
        solved = re.findall(r"^def exercise_(\d+)\(", _solutions(tutorial).read_text(), re.M)
        assert [int(n) for n in solved] == numbers, f"{_solutions(tutorial).name} solves {solved}, not {numbers}"


@pytest.mark.slow  # real workloads (fits, timings, fine-tuning): CI runs them, `-m "not slow"` skips them
@pytest.mark.parametrize("tutorial, number", list(_cases()))
def test_solution(tutorial, number):
    if tutorial.name.startswith(NEEDS_TORCH):
        pytest.importorskip("torch")
    module = _load(_solutions(tutorial))
    solve = getattr(module, f"exercise_{number}", None)
    assert solve is not None, f"{_solutions(tutorial).name} has no exercise_{number}"
    solve()  # each solution asserts its own answer
