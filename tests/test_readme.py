"""The Python examples of the README and of docs/ run as written (each file's blocks in one namespace, in order;
``py`` blocks are excerpts of modules, shown, not run)."""

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README] + sorted((ROOT / "docs").glob("*.md"))


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_run(page, capsys):
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), re.S)
    if page == README:
        assert blocks, "the README has Python examples"
    namespace = {}
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)


def test_readme_is_short_and_links_resolve():
    assert len(README.read_bytes()) <= 12 * 1024
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if not target.startswith("http"):
                assert (page.parent / target).exists(), f"{page.name} links to missing {target}"
