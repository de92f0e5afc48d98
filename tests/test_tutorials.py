"""Every tutorial source runs top to bottom in quick mode (its assert cells check what it claims)."""

import os
import pathlib
import subprocess
import sys

import pytest

TUTORIALS = sorted((pathlib.Path(__file__).resolve().parent.parent / "tutorials").glob("[0-9][0-9]_*.py"))


def test_all_nine_are_here_with_notebooks():
    assert [p.stem[:2] for p in TUTORIALS] == [f"{i:02d}" for i in range(1, 10)]
    for p in TUTORIALS:
        assert p.with_suffix(".ipynb").is_file(), f"{p.name} has no generated notebook"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path):
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    env = dict(os.environ, SPARSECONV_QUICK="1", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, path.name], cwd=path.parent, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
