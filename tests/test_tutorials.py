"""Every tutorial source runs top to bottom in quick mode (its assert cells check what it claims), and its
notebook is its generated, executed twin: the same cells, with their outputs and at least two figures."""

import os
import pathlib
import subprocess
import sys

import pytest

TUTORIALS = sorted((pathlib.Path(__file__).resolve().parent.parent / "tutorials").glob("[0-9][0-9]_*.py"))


def test_all_ten_are_here_with_notebooks():
    assert [p.stem[:2] for p in TUTORIALS] == [f"{i:02d}" for i in range(1, 11)]
    for p in TUTORIALS:
        assert p.with_suffix(".ipynb").is_file(), f"{p.name} has no generated notebook"


@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_the_notebook_is_the_sources_executed_twin(path):
    """No stale notebook: its cells are the jupytext source's, every code cell ran, and it draws >= 2 figures."""
    jupytext = pytest.importorskip("jupytext")
    import nbformat

    source = jupytext.read(path)
    notebook = nbformat.read(path.with_suffix(".ipynb"), as_version=4)
    assert [(c.cell_type, c.source) for c in notebook.cells] == [(c.cell_type, c.source) for c in source.cells], \
        f"{path.with_suffix('.ipynb').name} is stale: regenerate it from {path.name} (tutorials/README.md)"
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code), f"{path.with_suffix('.ipynb').name} was not executed"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    figures = sum(1 for c in code for o in c.outputs if "image/png" in o.get("data", {}))
    assert figures >= 2, f"{path.with_suffix('.ipynb').name} has {figures} figure(s)"


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=lambda p: p.stem)
def test_tutorial_runs(path):
    pytest.importorskip("torch")
    pytest.importorskip("mlxtend")
    env = dict(os.environ, SPARSECONV_QUICK="1", MPLBACKEND="Agg")
    done = subprocess.run([sys.executable, path.name], cwd=path.parent, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
