"""The figures, in :mod:`sparseconv.plot`'s style and palette, labelled axes with units.

``all_figures(out)`` (``sparseconv figures``) writes every figure of the
docs and tutorials: from ``compare`` on the default layer
(flops_vs_error, flops_vs_accuracy, speed_vs_flops), from the equal-budget
study (params_vs_error), from the theory (igcv1_width, igcv2_factors), the
factor pictures (structure_igcv1, structure_igcv3) and the default layer's
singular values.
"""

import json
import pathlib

import numpy as np

import sparseconv as sc

__all__ = ["all_figures", "compare_figures", "network_error_figure", "study_figure", "theory_figures"]

PALETTE = sc.plot.PALETTE


def _plt():
    # the figures are written to files, whatever backend the caller uses (a notebook keeps its inline one)
    return sc.plot.use_style()


def _style(family, families):
    return sc.plot.family_style(family, families)


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return pathlib.Path(path)


def compare_figures(records, out):
    """flops_vs_error.png, flops_vs_accuracy.png (with accuracies) and speed_vs_flops.png from compare's records."""
    from .compare import pareto

    plt = _plt()
    out = pathlib.Path(out)
    families = list(dict.fromkeys(r["family"] for r in records))
    dense_flops = 2 * records[0]["macs"] * records[0]["mac_reduction"]
    paths = []

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    front = pareto(records, key="equivalent_flops")
    for family in families:
        pts = [r for r in records if r["family"] == family]
        st = _style(family, families)
        ax.scatter([r["equivalent_flops"] for r in pts], [max(r["output_error"], 1e-4) for r in pts],
                   color=st["color"], marker=st["marker"], alpha=0.35, s=14)
        f = front[family]
        ax.plot([r["equivalent_flops"] for r in f], [max(r["output_error"], 1e-4) for r in f], label=family, **st,
                markersize=4)
    ax.axvline(dense_flops, color="#999999", linestyle=":", linewidth=1)
    ax.set(xscale="log", yscale="log", xlabel="FLOPs per image (+ bitops / 64)",
           ylabel="relative output error of the layer", title="Cost vs error on the default layer (Pareto fronts)")
    ax.legend(ncol=2, loc="lower left")
    paths.append(_save(fig, out / "flops_vs_error.png"))

    if any("accuracy" in r for r in records):
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for family in families:
            pts = sorted((r for r in records if r["family"] == family), key=lambda r: r["equivalent_flops"])
            ax.plot([r["equivalent_flops"] for r in pts], [100 * r["accuracy"] for r in pts], label=family,
                    markersize=4, **_style(family, families))
        ax.axhline(100 * records[0]["dense_accuracy"], color="#999999", linestyle=":", linewidth=1,
                   label="dense layer")
        ax.set(xscale="log", xlabel="FLOPs per image (+ bitops / 64)", ylabel="test accuracy (%)",
               title="Accuracy with the layer replaced (no retraining)")
        ax.legend(ncol=2, loc="lower right")
        paths.append(_save(fig, out / "flops_vs_accuracy.png"))

    fig, ax = plt.subplots(figsize=(5.2, 4.4))
    for family in families:
        pts = [r for r in records if r["family"] == family]
        st = _style(family, families)
        ax.scatter([r["mac_reduction"] for r in pts], [r["speedup"] for r in pts], label=family,
                   color=st["color"], marker=st["marker"], s=20)
    hi = max(max(r["mac_reduction"] for r in records), max(r["speedup"] for r in records)) * 1.2
    lo = min(min(r["mac_reduction"] for r in records), min(r["speedup"] for r in records)) / 1.2
    ax.plot([lo, hi], [lo, hi], color="#999999", linestyle="--", linewidth=1, label="speedup = MAC reduction")
    ax.axhline(1, color="#999999", linestyle=":", linewidth=1)
    ax.set(xscale="log", yscale="log", xlabel="MAC reduction (dense MACs / its MACs, x)",
           ylabel="measured speedup over dense conv2d (x)", title="Where fewer FLOPs become less time")
    ax.legend(ncol=2, fontsize=6, loc="upper left")
    paths.append(_save(fig, out / "speed_vs_flops.png"))
    return paths


def study_figure(rows, out):
    """params_vs_error.png: test error (mean +- std over seeds) against parameters, one line per design."""
    plt = _plt()
    designs = list(dict.fromkeys(r["design"] for r in rows))
    fig, ax = plt.subplots(figsize=(6.0, 4.2))
    for design in designs:
        pts = sorted((r for r in rows if r["design"] == design), key=lambda r: r["params"])
        ax.errorbar([r["params"] for r in pts], [100 * r["error_mean"] for r in pts],
                    yerr=[100 * r["error_std"] for r in pts], label=design, capsize=2, markersize=4,
                    **_style(design, designs))
    ax.set(xlabel="parameters of the network (thousands)", ylabel="test error (%), mean ± std over seeds",
           title="Equal-budget networks on the digits")
    ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:g}"))
    ax.legend(fontsize=6)
    return [_save(fig, pathlib.Path(out) / "params_vs_error.png")]


def theory_figures(out, C=64, S=9):
    """igcv1_width.png, igcv2_factors.png, structure_igcv1.png, structure_igcv3.png."""
    from .. import theory

    plt = _plt()
    out = pathlib.Path(out)
    paths = []
    budget = theory.regular_params(C, S)
    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    Ls, widths = [], []
    for L in range(1, 65):
        # the widest IGCV1 with L partitions within the budget: the largest M with G (M S + L) <= budget
        M = max((m for m in range(1, 2 * C) if theory.igcv1_params(L, m, S) <= budget), default=0)
        if M:
            Ls.append(L)
            widths.append(L * M)
    best = int(np.argmax(widths))
    ax.plot(Ls, widths, marker="o", markersize=3, color=PALETTE[5])
    ax.plot(Ls[best], widths[best], marker="*", markersize=12, color=PALETTE[6],
            label=f"widest: L={Ls[best]}, G={widths[best]}")
    ax.axhline(C, color="#999999", linestyle=":", label=f"regular conv, C={C}")
    ax.set(xscale="log", xlabel="primary partitions L", ylabel="width G = L M (channels)",
           title=f"IGCV1 width at the parameters of a {C}-channel 3x3 conv")
    ax.legend()
    paths.append(_save(fig, out / "igcv1_width.png"))

    fig, ax = plt.subplots(figsize=(5.2, 3.8))
    n = np.arange(2, 9)
    params = [theory.igcv2_balanced(C, S, int(k))[1] for k in n]
    ax.plot(n, params, marker="o", color=PALETTE[5], label="balanced design (real-valued K)")
    sizes, best_params = theory.igcv2_optimal_factors(C, S)
    ax.plot(len(sizes) + 1, best_params, marker="*", markersize=12, color=PALETTE[6],
            label=f"best integer design K={'x'.join(map(str, sizes))}")
    ax.set(xlabel="number of factors L (one channel-wise + L-1 group 1x1)", ylabel="parameters",
           title=f"IGCV2 on C={C}: the balance condition, L-1 ~ ln C")
    ax.legend()
    paths.append(_save(fig, out / "igcv2_factors.png"))

    for name, op in (("structure_igcv1", sc.IGCV1.random(4, 4, kernel_size=3)),
                     ("structure_igcv3", sc.IGCV3.random(8, 8, expansion=2, groups=(2, 2)))):
        fig = sc.plot.structure(op)
        paths.append(_save(fig, out / f"{name}.png"))
    return paths


def singular_values_figure(out):
    """singular_values.png: the spectrum of the default layer's (64 x 576) matrix, and its energy."""
    from .network import load_network

    plt = _plt()
    w = load_network()["conv2.weight"]
    s = np.linalg.svd(w.reshape(w.shape[0], -1).astype(np.float64), compute_uv=False)
    energy = np.cumsum(s ** 2) / np.sum(s ** 2)
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.semilogy(np.arange(1, len(s) + 1), s, marker="o", markersize=3, color=PALETTE[5], label="singular value")
    ax.set(xlabel="index", ylabel="singular value", title="Spectrum of the default layer (64 x 576)")
    ax2 = ax.twinx()
    ax2.plot(np.arange(1, len(s) + 1), 100 * energy, color=PALETTE[6], label="energy kept (%)")
    ax2.set_ylabel("energy kept by the first r (%)")
    ax2.grid(False)
    fig.legend(loc="center right", fontsize=7)
    return [_save(fig, pathlib.Path(out) / "singular_values.png")]


def all_figures(out="figures", quick=False, compare_json=None, study_json=None, progress=True):
    """Regenerate every figure into ``out``: runs compare and the study unless their JSON is given."""
    from .budget import equal_budget
    from .compare import compare

    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if compare_json:
        records = json.loads(pathlib.Path(compare_json).read_text())["records"]
    else:
        records = compare(quick=quick, progress=progress)
    if study_json:
        rows = json.loads(pathlib.Path(study_json).read_text())["rows"]
    else:
        rows = equal_budget(quick=quick, progress=progress)["rows"]
    paths = compare_figures(records, out) + study_figure(rows, out) + theory_figures(out)
    paths += singular_values_figure(out)
    return paths


def network_error_figure(result, path, target=2.0):
    """network_error.png: per layer (rows) and family (columns), the lowest network output error among the
    family's points with at least ``target`` x fewer MACs; blank where the family has none there."""
    from matplotlib.colors import LogNorm

    from .compare import scored

    plt = _plt()
    records = [r for r in scored(result["records"]) if "network_error" in r]
    layers = [row["name"] for row in result["layers"] if "skipped" not in row]
    families = list(dict.fromkeys(r["family"] for r in result["records"]))
    grid = np.full((len(layers), len(families)), np.nan)  # (layers, families)
    for r in records:
        if r["mac_reduction"] >= target:
            i, j = layers.index(r["layer"]), families.index(r["family"])
            grid[i, j] = np.nanmin([grid[i, j], max(r["network_error"], 1e-6)])
    fig, ax = plt.subplots(figsize=(2.4 + 0.55 * len(families), max(2.8, 1.6 + 0.2 * len(layers))))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#eeeeee")
    finite = grid[np.isfinite(grid)]
    norm = LogNorm(vmin=max(finite.min(), 1e-6), vmax=max(finite.max(), 2e-6)) if finite.size else None
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, norm=norm, aspect="auto", interpolation="nearest")
    ax.set_xticks(range(len(families)), families, rotation=45, ha="right")
    ax.set_yticks(range(len(layers)), layers, fontsize=max(4, 8 - len(layers) // 20))
    ax.grid(False)
    ax.set_title(f"Network output error, one layer replaced\n(best point with >= {target:g}x fewer MACs; "
                 f"grey: none)", fontsize=8)
    if norm is not None:
        fig.colorbar(im, ax=ax, label="network output error")
    return _save(fig, path)
