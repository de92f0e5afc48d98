"""The plain-text tables and JSON files that the tools (bench, study, cli) and count_cost print and write."""

import json

__all__ = ["format_table", "write_json"]


def format_table(headers, rows):
    """Plain-text table with right-aligned columns."""
    cells = [[str(h) for h in headers]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(v.rjust(w) for v, w in zip(row, widths)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_json(path, payload):
    """``payload`` as indented JSON (NumPy scalars as floats)."""
    with open(path, "w") as f:
        json.dump(payload, f, indent=2, default=float)
