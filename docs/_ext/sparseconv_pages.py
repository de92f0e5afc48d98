"""Pages written from the code before Sphinx reads its sources, into ``docs/generated/`` (not in git).

- ``generated/tutorials/``: the executed notebooks, copied as they are (myst-nb renders them, never re-runs
  them), their exercises' solutions, and their index in the order of ``tutorials/``;
- ``generated/families/``: one page per registered family, from :mod:`sparseconv.registry`: its summary,
  operators, torch module, constructor, and the budgets ``compare`` sweeps with what each stores and runs;
- ``generated/cli.md``: every subcommand's ``--help``, from the parser the command builds.

The benchmark tables of ``docs/benchmarks.md`` are generated from the JSON files ``sparseconv bench ...
--json`` wrote (``docs/bench-results/``), each headed by the CPU and paths it was measured on; they live in
the page itself (so that it reads the same on GitHub), between ``<!-- bench: NAME.json -->`` and
``<!-- end bench -->``. ``python docs/_ext/sparseconv_pages.py`` rewrites them after a new run; the build
and the test suite refuse a page whose tables differ from its JSON.
"""

import json
import pathlib
import re
import shutil

import numpy as np

import sparseconv as sc

DOCS = pathlib.Path(__file__).resolve().parent.parent
ROOT = DOCS.parent
OUT = DOCS / "generated"


def write_tutorials():
    out = OUT / "tutorials"
    out.mkdir(parents=True, exist_ok=True)
    notebooks = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.ipynb"))
    for nb in notebooks:
        shutil.copyfile(nb, out / nb.name)
    (out / "solutions").mkdir(exist_ok=True)
    for solution in sorted((ROOT / "tutorials" / "solutions").glob("s[0-9][0-9]_*.py")):
        shutil.copyfile(solution, out / "solutions" / solution.name)  # the notebooks link them (downloads)
    lines = ["# Tutorials", "",
             "From \"a convolution is a matrix times a vector\" to compressing your own network, in order. "
             "Each page is the executed notebook of `tutorials/NN_name.py` (its jupytext source); the exercises' "
             "solutions are in `tutorials/solutions/` and the test suite checks them.", "",
             "```{toctree}", ":maxdepth: 1", ""]
    lines += [nb.stem for nb in notebooks] + ["```", ""]
    _write(out / "index.md", "\n".join(lines))


def _write(path, text):
    """Write only when the text changed, so that Sphinx rebuilds only what did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.is_file() or path.read_text() != text:
        path.write_text(text)


#: the default layer of ``sparseconv compare`` (conv2 of the digits network) and its input
DEFAULT_KERNEL, DEFAULT_INPUT = (64, 64, 3, 3), (1, 64, 14, 14)
#: the other layer kinds a family page says it can or cannot take
OTHER_LAYERS = {"1x1, 256 -> 64": (64, 256, 1, 1), "3x3, 32 -> 64": (64, 32, 3, 3),
                "stem 7x7, 3 -> 64": (64, 3, 7, 7), "1x1, 128 -> 128": (128, 128, 1, 1)}


def _budget_rows(family):
    """One row per budget ``compare`` sweeps on the default layer: what the operator stores and runs."""
    weight = np.random.default_rng(0).standard_normal(DEFAULT_KERNEL).astype(np.float32)
    dense = sc.conv_cost(weight, DEFAULT_INPUT, padding=1)
    rows = [("dense (the layer itself)", f"{weight.nbytes:,}", f"{dense.macs:,.0f}", "1.0", "")]
    for label, params in family.points(DEFAULT_KERNEL):
        # what an operator stores and runs does not depend on how well it was fitted: one ALS sweep, or
        # k-means from evenly spaced centroids, will do
        quick_fit = dict(max_iter=1) if "max_iter" in params else dict(init="linear") if "n_clusters" in params else {}
        op = family.build(weight, **dict(params, **quick_fit))
        cost = sc.conv_cost(op, DEFAULT_INPUT, padding=1)
        bitops = f"{cost.bitops:,.0f}" if cost.bitops else ""
        rows.append((label, f"{op.nbytes:,}", f"{cost.macs:,.0f}", f"{dense.macs / max(cost.macs, 1):.1f}", bitops))
    return rows


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _family_page(family):
    build = family.build
    ops = ", ".join(f"{{class}}`~sparseconv.{op.__name__}`" for op in family.operators)
    torch_modules = sorted({op.torch_module for op in family.operators if getattr(op, "torch_module", None)})
    other = [(name, family.cannot(shape) or f"{len(family.points(shape))} budgets")
             for name, shape in OTHER_LAYERS.items()]
    lines = [f"# `{family.name}`", "", family.summary.rstrip(".") + ".", "",
             f"- constructor: {{func}}`sparseconv.{build.__name__}` "
             f"(`sparseconv.torch.from_conv(conv, \"{family.name}\", ...)` in torch)",
             f"- operators: {ops}",
             "- torch module: " + (", ".join(f"`sparseconv.torch.{m}`" for m in torch_modules) or "the dense conv"),
             "- depthwise layers: " + ("compare runs it there (a sparse format: the zero blocks stay free)"
                                       if family.keeps_zeros else "compare skips it there (it would run the "
                                       "dense block-diagonal matrix)"), "",
             "## The budgets `compare` sweeps", "",
             f"On the default layer (C_out, C_in, kH, kW) = {DEFAULT_KERNEL}, input {DEFAULT_INPUT}, "
             "padding 1: what each operator stores (`nbytes`, the file's payload) and runs (`conv_cost`). "
             "Computed when this page was built, from the registry, on a seeded random weight of that shape "
             "(storage and MACs do not depend on the values; the errors do, see "
             "[the main job](../../main-job.md)).", "",
             _table(("budget", "nbytes", "MACs", "MAC reduction (x)", "bitops"), _budget_rows(family)), "",
             "## Other layers", "",
             _table(("layer", "compare sweeps"), other), "",
             "## Constructor", "",
             "```{eval-rst}", f".. autofunction:: sparseconv.{build.__name__}", "   :no-index:", "```", ""]
    return "\n".join(lines)


def write_families():
    out = OUT / "families"
    families = sc.registry.families()
    for family in families:
        _write(out / f"{family.name}.md", _family_page(family))
    rows = [(f"[`{f.name}`]({f.name}.md)", f.summary, f"`{f.build.__name__}`",
             ", ".join(f"`{op.__name__}`" for op in f.operators)) for f in families]
    text = "\n".join(["# The families", "",
                      "Every compression family the registry holds (`sparseconv.registry.families()`), one page "
                      "each, written from the registry when the site is built: a family declared in its own "
                      "module appears here with nothing else to edit.", "",
                      _table(("family", "what it is", "constructor", "operators"), rows), "",
                      "```{toctree}", ":hidden:", ""] + [f.name for f in families] + ["```", ""])
    _write(out / "index.md", text)


def _subparsers(parser):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


def write_cli():
    """The ``sparseconv`` command: every subcommand's ``--help``, from the parser the command itself builds."""
    from sparseconv.cli import build_parser

    parser = build_parser()
    lines = ["# The command line", "",
             "`sparseconv` (or `python -m sparseconv`): every subcommand's `--help`, as the installed command "
             "prints it (written from its parser when this site was built).", "",
             "```text", parser.format_help().rstrip(), "```", ""]

    def walk(prefix, parser):
        for name, sub in _subparsers(parser).items():
            lines.extend([f"## `{prefix} {name}`", "", "```text", sub.format_help().rstrip(), "```", ""])
            walk(f"{prefix} {name}", sub)

    walk("sparseconv", parser)
    _write(OUT / "cli.md", "\n".join(lines))


def _measured_on(result):
    env = result["environment"] if "environment" in result else result["networks"][0]["environment"]
    blas = env.get("gemm_backend", "?")
    torch = f", torch {env['torch']} with {env['torch_threads']} threads" if env.get("torch") else ""
    command = f" Command: `{result['command']}`." if result.get("command") else ""
    return (f"*Measured on {env['processor']} ({env['cpu_count']} CPUs), ISA level {env['isa_level']} "
            f"(kernels compiled for {env.get('compiled_for', '?')}), {env.get('date', 'undated')}: numba "
            f"{env['numba']} with {env['numba_threads']} threads{torch}, GEMM inside the kernels: {blas}."
            f"{command}*")


def _bench_conv_md(result):
    from sparseconv.bench.conv import table

    rates = ", ".join(f"{name} {rate:.0f}" for name, rate in result["gemm_gflops"].items())
    return (f"Float32 GEMM rate in the same run: {rates} GFLOP/s.\n\n"
            + _table(*table(result["records"], result["gemm_gflops"])))


def _bench_network_md(result):
    from sparseconv.bench.network import network_table

    parts = []
    for net in result.get("networks", [result]):
        headers, rows, totals = network_table(net)
        parts += [f"**{net['network']}**", "", _table(headers, rows), ""]
        parts += [f"- total conv time at N={n}: sparseconv {t['sparseconv'] * 1e3:.2f} ms, torch "
                  f"{t['torch'] * 1e3:.2f} ms ({t['sparseconv'] / t['torch']:.2f}x), ONNX Runtime "
                  f"{t['onnxruntime'] * 1e3:.2f} ms ({t['sparseconv'] / t['onnxruntime']:.2f}x)"
                  for n, t in totals.items()]
        parts.append("")
    return "\n".join(parts)


def _bench_igc_md(result):
    from sparseconv.bench.igc import igc_table

    return _table(*igc_table(result["records"]))


def _bench_sparse_md(result):
    from sparseconv.bench import sparse

    parts = []
    for part, fn in (("csr", sparse.csr_table), ("groups", sparse.groups_table), ("lowrank", sparse.lowrank_table)):
        if part in result:
            parts += [_table(*fn(result[part])), ""]
    return "\n".join(parts)


def _bench_lowp_md(result):
    from sparseconv.bench.lowp import lowp_table

    return _table(*lowp_table(result))


def _bench_torch_md(result):
    from sparseconv.bench.torchpath import torch_table

    env = result["environment"]
    return (f"CUDA device: {env.get('cuda_device') or 'none'}; Triton {env.get('triton') or 'not installed'}.\n\n"
            + _table(*torch_table(result["records"])))


#: each file in docs/bench-results/ is named after the ``sparseconv bench`` command that wrote it
BENCH_KINDS = {"conv": _bench_conv_md, "network": _bench_network_md, "igc": _bench_igc_md,
               "sparse": _bench_sparse_md, "lowp": _bench_lowp_md, "torch": _bench_torch_md}


#: a generated block of docs/benchmarks.md: ``<!-- bench: NAME.json -->``, the tables, ``<!-- end bench -->``
BENCH_BLOCK = re.compile(r"(<!-- bench: (?P<name>[\w.-]+\.json) -->\n)(?P<body>.*?)(<!-- end bench -->)", re.S)


def bench_markdown(name):
    """The CPU line and the table(s) of docs/bench-results/NAME, as Markdown."""
    kind = name.split("-")[0].split(".")[0]
    if kind not in BENCH_KINDS:
        raise ValueError(f"{name}: a bench result's name starts with one of {sorted(BENCH_KINDS)}")
    result = json.loads((DOCS / "bench-results" / name).read_text())
    return "\n\n".join([_measured_on(result), BENCH_KINDS[kind](result).rstrip()]) + "\n"


def benchmarks_page(text):
    """docs/benchmarks.md's text with every generated block rewritten from its JSON file."""
    return BENCH_BLOCK.sub(lambda m: m.group(1) + "\n" + bench_markdown(m.group("name")) + "\n" + m.group(4), text)


def check_benchmarks_page():
    page = DOCS / "benchmarks.md"
    if benchmarks_page(page.read_text()) != page.read_text():
        raise RuntimeError("docs/benchmarks.md's tables differ from docs/bench-results/: "
                           "run `python docs/_ext/sparseconv_pages.py` to rewrite them from the JSON")


def on_builder_inited(app):
    write_tutorials()
    write_families()
    write_cli()
    check_benchmarks_page()


def setup(app):
    app.connect("builder-inited", on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":
    page = DOCS / "benchmarks.md"
    page.write_text(benchmarks_page(page.read_text()))
    print(f"rewrote the generated tables of {page}")
