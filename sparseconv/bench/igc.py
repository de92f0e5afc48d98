"""``sparseconv bench igc``: IGCV1 at the width of a dense layer, against the dense layer and torch's pipeline.

For 64ch 56x56 and 256ch 14x14 (3x3, 'same'), N = 1 and 8, and IGCV1 with
L = 2, 4, 8, 16 primary partitions (M = C / L), side by side in one run:
sparseconv's IGCV1 conv2d, sparseconv's dense conv2d, torch's pipeline
(grouped 3x3 conv -> channel shuffle -> grouped 1x1 conv -> shuffle back)
and torch's dense conv2d. "Realised" = (speedup over the same library's
dense conv) / (MAC reduction).
"""

import numpy as np

import sparseconv

from .._table import format_table
from .harness import Contender, environment, run

__all__ = ["LAYERS", "bench_igc", "igc_table"]

#: (name, C, H=W): C -> C channels, 3x3
LAYERS = [("64ch 56x56 3x3", 64, 56), ("256ch 14x14 3x3", 256, 14)]


def _torch_pipeline(torch, F, xt, op):
    L, M = op.L, op.M
    primary = torch.from_numpy(op.primary.weight)
    secondary = torch.from_numpy(op.secondary.weight)

    def fn():
        y = F.conv2d(xt, primary, padding=1, groups=L)
        y = F.channel_shuffle(y, L)
        y = F.conv2d(y, secondary, groups=M)
        return F.channel_shuffle(y, M).numpy()  # a shuffle with M groups undoes one with L on L*M channels

    return fn


def bench_igc(quick=False, repeat=None, progress=print):
    """Run the benchmark; return the environment and one record per (layer, N, L)."""
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        torch = F = None
    rng = np.random.default_rng(0)
    records = []
    for name, c, hw in LAYERS:
        dense_w = (rng.standard_normal((c, c, 3, 3), dtype=np.float32) / np.sqrt(9 * c)).astype(np.float32)
        dense_op = sparseconv.DenseWeight(dense_w)
        for n in ((1,) if quick else (1, 8)):
            x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
            dense_out = sparseconv.conv2d(x, dense_op, padding=1)
            for L in ((2, 8) if quick else (2, 4, 8, 16)):
                op = sparseconv.IGCV1.random(L, c // L, seed=L)
                out = sparseconv.conv2d(x, sparseconv.DenseWeight(op.to_weight()), padding=1)
                contenders = [
                    Contender("sparseconv", lambda: sparseconv.conv2d(x, op, padding=1), "numba"),
                    Contender("sparseconv dense", lambda: sparseconv.conv2d(x, dense_op, padding=1), "numba",
                              reference=dense_out),
                ]
                if torch is not None:
                    xt, dt = torch.from_numpy(x), torch.from_numpy(dense_w)
                    contenders += [
                        Contender("torch", _torch_pipeline(torch, F, xt, op), "torch"),
                        Contender("torch dense", lambda: F.conv2d(xt, dt, padding=1).numpy(), "torch",
                                  reference=dense_out),
                    ]
                results = run(contenders, out, repeat=repeat or (3 if quick else 5), min_sample_s=0.03)
                med = {r.name: (r.median_s if r.ok else float("nan")) for r in results}
                reduction = dense_op.conv_cost(x.shape, padding=1).macs / op.conv_cost(x.shape, padding=1).macs
                rec = {"layer": name, "N": n, "L": L, "M": c // L, "mac_reduction": reduction,
                       **{k: med.get(k, float("nan")) for k in ("sparseconv", "sparseconv dense", "torch",
                                                                 "torch dense")}}
                rec["realised"] = rec["sparseconv dense"] / rec["sparseconv"] / reduction
                rec["torch_realised"] = rec["torch dense"] / rec["torch"] / reduction
                records.append(rec)
                progress(f"igc {name} N={n} L={L}: sparseconv realised {rec['realised']:.2f}, "
                         f"torch {rec['torch_realised']:.2f}")
    return {"environment": environment(), "records": records}


def igc_table(records):
    headers = ["layer", "N", "L", "M", "MAC reduction", "sparseconv ms", "dense ms", "realised", "torch ms",
               "torch dense ms", "torch realised", "torch / sparseconv"]
    rows = [[r["layer"], r["N"], r["L"], r["M"], f"{r['mac_reduction']:.1f}", f"{r['sparseconv'] * 1e3:.2f}",
             f"{r['sparseconv dense'] * 1e3:.2f}", f"{r['realised']:.2f}", f"{r['torch'] * 1e3:.2f}",
             f"{r['torch dense'] * 1e3:.2f}", f"{r['torch_realised']:.2f}", f"{r['torch'] / r['sparseconv']:.2f}"]
            for r in records]
    return headers, rows


def print_table(result, echo=print):
    echo(format_table(*igc_table(result["records"])))
