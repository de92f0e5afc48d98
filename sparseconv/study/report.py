"""Printing and writing ``compare`` results: the summary table, compare.csv, compare.json, the figures."""

import csv
import json
import math
import pathlib
import statistics

from .._table import format_table
from .compare import pareto, scored

__all__ = ["best_points", "cheapest_per_layer", "model_summary", "per_layer", "sensitivity", "summary",
           "write_model_outputs", "write_outputs"]

#: MAC reductions at which the summary names each family's best point
TARGETS = (2.0, 4.0, 10.0)


def best_points(records, key, target):
    """Per family, the point with the lowest output error among those whose ``key`` reaches ``target``."""
    out = {}
    records = scored(records)
    for family in dict.fromkeys(r["family"] for r in records):
        ok = [r for r in records if r["family"] == family and r[key] >= target]
        if ok:
            out[family] = min(ok, key=lambda r: r["output_error"])
    return out


def summary(records):
    """The best point of each family at 2x, 4x and 10x fewer MACs, and at 4x and 10x less storage; what was skipped."""
    skipped = [r for r in records if "skipped" in r]
    records = scored(records)
    if not records:
        return "nothing could be scored on this layer:\n" + _skips(skipped)
    has_acc = any("accuracy" in r for r in records)
    head = f"dense layer: test accuracy {records[0]['dense_accuracy']:.3f}; " if has_acc else ""
    dense_ms = statistics.median(r["dense_time_s"] for r in records) * 1e3  # timed beside each point
    head += f"inputs: {records[0]['inputs']}; dense conv2d {dense_ms:.2f} ms"
    parts = [head]
    for key, title, targets in (("mac_reduction", "MAC reduction", TARGETS),
                                ("storage_reduction", "storage reduction", (4.0, 10.0))):
        headers = [f"{title} >=", "family", "point", "MACs /", "bytes /", "output error", "weight error"]
        headers += ["accuracy"] if has_acc else []
        headers += ["speedup"]
        rows = []
        for target in targets:
            for family, best in best_points(records, key, target).items():
                row = [f"{target:g}x", family, best["label"], f"{best['mac_reduction']:.1f}",
                       f"{best['storage_reduction']:.1f}", f"{best['output_error']:.3f}",
                       f"{best['weight_error']:.3f}"]
                row += [f"{best['accuracy']:.3f}"] if has_acc else []
                row += [f"{best['speedup']:.2f}x"]
                rows.append(row)
        parts.append(f"best output error per family at {title}:\n" + format_table(headers, rows))
    if skipped:
        parts.append("skipped:\n" + _skips(skipped))
    return "\n\n".join(parts)


def _skips(skipped):
    rows = [[r["family"], r["label"] or "-", r["skipped"]] for r in skipped]
    return format_table(["family", "point", "reason"], rows)


def _flat(record):
    out = {k: v for k, v in record.items() if k != "params"}
    out["params"] = json.dumps(record["params"])
    return out


def _write_csv(records, path):
    flat = [_flat(r) for r in records]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    return path


def write_outputs(records, out_dir, quick=False):
    """compare.csv, compare.json and the compare figures into ``out_dir``; returns the paths written."""
    from .figures import compare_figures

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    with open(out / "compare.json", "w") as f:
        json.dump({"records": records, "pareto_output_error": {k: [r["label"] for r in v]
                                                               for k, v in pareto(records).items()}}, f, indent=2)
    paths.append(out / "compare.json")
    paths.append(_write_csv(records, out / "compare.csv"))
    paths += compare_figures(scored(records), out) if scored(records) else []
    return paths


def _macs(r):
    return r["macs"] + r["bitops"] / 128


def cheapest_per_layer(result, max_error=0.01):
    """Per studied layer, its cheapest point whose network error is at most ``max_error``, or None.

    Cheapest: the fewest MACs (bitops at 1/128) among the points at least 1%
    cheaper than the layer in MACs; where none is, the fewest bytes among the
    points at least 1% smaller that cost no more MACs than the layer.
    """
    out = {}
    for row in result["layers"]:
        if "skipped" in row:
            continue
        ok = [r for r in scored(result["records"]) if r["layer"] == row["name"]
              and r.get("network_error", math.inf) <= max_error]
        faster = [r for r in ok if r["mac_reduction"] >= 1.01]
        smaller = [r for r in ok if r["storage_reduction"] >= 1.01 and r["mac_reduction"] >= 0.99]
        out[row["name"]] = (min(faster, key=lambda r: (_macs(r), r["bytes"])) if faster else
                            min(smaller, key=lambda r: (r["bytes"], _macs(r))) if smaller else None)
    return out


def sensitivity(result, target=2.0):
    """Per studied layer, the lowest network error any family reaches with at least ``target`` x fewer MACs
    (NaN when none reaches it): a high value marks a layer that no family can cheapen safely."""
    out = {}
    for row in result["layers"]:
        if "skipped" in row:
            continue
        errs = [r["network_error"] for r in scored(result["records"]) if r["layer"] == row["name"]
                and "network_error" in r and r["mac_reduction"] >= target]
        out[row["name"]] = min(errs) if errs else math.nan
    return out


def model_summary(result, max_error=0.01, target=2.0):
    """What ``compare --onnx`` / whole-network ``--torch`` prints: the cheapest safe family per layer, the
    families that won, the most sensitive layers, the skipped layers."""
    rows = result["layers"]
    studied = [r for r in rows if "skipped" not in r]
    what = ("top-1 agreement with the original network scored" if result["class_scores"]
            else "the output is not a class-score matrix: no top-1 agreement")
    head = (f"model: {result['model']} ({result['backend']}); inputs {tuple(result['inputs'])}; output "
            f"{tuple(result['output_shape'])}: {what}\n{len(rows)} conv layers, {len(studied)} studied; the "
            f"network's forward pass on the inputs took {result['network_time_s']:.2f} s")
    parts = [head]
    best = cheapest_per_layer(result, max_error)
    table = []
    for row in studied:
        r = best[row["name"]]
        cells = [row["name"], row["geometry"], f"{row['dense_time_s'] * 1e3:.2f}" if row["dense_time_s"] else "-"]
        if r is None:
            cells += ["none"] + ["-"] * 7
        else:
            cells += [r["family"], r["label"], f"{r['mac_reduction']:.2f}", f"{r['storage_reduction']:.1f}",
                      f"{r['network_error']:.4f}",
                      f"{r['top1_agreement']:.3f}" if "top1_agreement" in r else "-", f"{r['output_error']:.3f}",
                      f"{r['speedup']:.2f}x"]
        table.append(cells)
    headers = ["layer", "weight, geometry", "dense ms", "family", "point", "MACs /", "bytes /", "network error",
               "top-1", "layer error", "speedup"]
    parts.append(f"cheapest point per layer with the network's output error <= {max_error:g} (one layer replaced at "
                 f"a time):\n" + format_table(headers, table))
    wins = {}
    for r in best.values():
        if r is not None:
            wins[r["family"]] = wins.get(r["family"], 0) + 1
    if wins:
        parts.append("families that were cheapest on the most layers: " + ", ".join(
            f"{f} {n}" for f, n in sorted(wins.items(), key=lambda kv: -kv[1])))
    sens = sorted(((e, name) for name, e in sensitivity(result, target).items() if not math.isnan(e)), reverse=True)
    if sens:
        parts.append(f"most sensitive layers (the lowest network error any family reaches at >= {target:g}x fewer "
                     f"MACs):\n" + format_table(["layer", "network error"],
                                                [[name, f"{e:.4f}"] for e, name in sens[:5]]))
    skipped = [r for r in rows if "skipped" in r]
    if skipped:
        parts.append("skipped layers:\n" + format_table(["layer", "reason"], [[r["name"], r["skipped"]]
                                                                             for r in skipped]))
    return "\n\n".join(parts)


def per_layer(result):
    """Each studied layer's :func:`summary` (the best point per family at 2x, 4x, 10x), one after another."""
    parts = []
    for row in result["layers"]:
        if "skipped" not in row:
            recs = [r for r in result["records"] if r["layer"] == row["name"]]
            parts.append(f"== {row['name']}: {row['geometry']}\n{summary(recs)}")
    return "\n\n".join(parts)


def write_model_outputs(result, out_dir, max_error=0.01, target=2.0):
    """compare_model.json, compare_model.csv, per_layer.txt and network_error.png into ``out_dir``."""
    from .figures import network_error_figure

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "compare_model.json", "w") as f:
        json.dump(result, f, indent=2)
    _write_csv(result["records"], out / "compare_model.csv")
    (out / "per_layer.txt").write_text(per_layer(result) + "\n")
    paths = [out / "compare_model.json", out / "compare_model.csv", out / "per_layer.txt"]
    if any("network_error" in r for r in result["records"]):
        paths.append(network_error_figure(result, out / "network_error.png", target))
    return paths
