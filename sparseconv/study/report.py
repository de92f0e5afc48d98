"""Printing and writing ``compare`` results: the summary table, compare.csv, compare.json, the figures."""

import csv
import json
import pathlib

from .._table import format_table
from .compare import pareto, scored

__all__ = ["best_points", "summary", "write_outputs"]

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
    head += f"inputs: {records[0]['inputs']}; dense conv2d {records[0]['dense_time_s'] * 1e3:.2f} ms"
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
    flat = [_flat(r) for r in records]
    fields = list(dict.fromkeys(k for r in flat for k in r))
    with open(out / "compare.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(flat)
    paths.append(out / "compare.csv")
    paths += compare_figures(scored(records), out) if scored(records) else []
    return paths
