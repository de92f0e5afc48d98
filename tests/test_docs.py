"""The documentation's generated parts stay true: the benchmark tables are what their JSON files say."""

import importlib.util
import pathlib
import re

import pytest

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs"


@pytest.fixture(scope="module")
def pages():
    spec = importlib.util.spec_from_file_location("sparseconv_pages", DOCS / "_ext" / "sparseconv_pages.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_benchmark_tables_are_their_json(pages):
    text = (DOCS / "benchmarks.md").read_text()
    assert pages.benchmarks_page(text) == text, "run `python docs/_ext/sparseconv_pages.py`"
    used = set(re.findall(r"<!-- bench: ([\w.-]+\.json) -->", text))
    files = {p.name for p in (DOCS / "bench-results").glob("*.json")}
    assert used == files, f"unused: {files - used}, missing: {used - files}"
    for name in used:
        assert "*Measured on " in pages.bench_markdown(name)  # every table says its CPU and paths


def test_a_stale_table_is_refused(pages, tmp_path, monkeypatch):
    text = (DOCS / "benchmarks.md").read_text()
    first = re.search(r"<!-- bench: ([\w.-]+\.json) -->\n", text)
    stale = text.replace(first.group(0), first.group(0) + "| a row from an older run |\n", 1)
    assert pages.benchmarks_page(stale) == text
    page = tmp_path / "benchmarks.md"
    page.write_text(stale)
    monkeypatch.setattr(pages, "DOCS", tmp_path)
    (tmp_path / "bench-results").symlink_to(DOCS / "bench-results")
    with pytest.raises(RuntimeError, match="differ from docs/bench-results"):
        pages.check_benchmarks_page()


def test_the_api_reference_lists_every_public_name():
    import sparseconv

    listed = set(re.findall(r"^   (\w[\w.]*)$", (DOCS / "api.md").read_text(), re.M))
    assert set(sparseconv.__all__) <= listed, sorted(set(sparseconv.__all__) - listed)
