"""``sparseconv bench sparse``: where sparsity, groups and low rank turn fewer FLOPs into less time.

Three parts, each timed side by side in one run (see :mod:`.harness`):

- ``csr``: the pruned-weight kernels against ``scipy.sparse`` (CSR @ dense,
  single-threaded) and the dense float32 GEMM (NumPy), for a 256 x 2304
  weight (256 channels, 3x3) against 3136 columns, at 50-99% sparsity, and
  the structured formats (2:4, blocks, kernels, channels);
- ``groups``: group (block-diagonal) convolutions for groups = 2 ... 32 and
  depthwise on the conv benchmark's layers, against sparseconv's dense
  conv2d and torch's grouped and dense conv2d; depthwise convolution is
  bound by memory, so its rows also give the bandwidth it reached (input and
  output bytes / time) beside the STREAM triad's on numba's threads;
- ``lowrank``: rank C/2, C/4, C/8 factorizations (two convolutions) against
  the dense conv2d.

"Realised" is (speedup over dense) / (FLOP reduction): 1.0 when the whole
saving shows up as time.
"""

import numpy as np

import sparseconv

from .conv import LAYERS
from .._table import format_table
from .harness import Contender, environment, run

__all__ = ["PARTS", "bench_csr", "bench_groups", "bench_lowrank", "bench_sparse"]

PARTS = ("csr", "groups", "lowrank")


def _med(results, name):
    for r in results:
        if r.name == name:
            return r.median_s if r.ok else float("nan")
    return float("nan")


def _torch():
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return None, None
    return torch, F


def bench_csr(quick=False, repeat=None, progress=print):
    """Pruned 256 x 2304 weight against 3136 columns: kernels vs scipy.sparse vs dense GEMM."""
    import scipy.sparse  # noqa: F401 (the peer)

    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((256, 256, 3, 3), dtype=np.float32) / 48).astype(np.float32)
    cols = rng.standard_normal((2304, 3136), dtype=np.float32)
    matrix = weight.reshape(256, -1)
    dense_out = matrix @ cols
    cases = [("unstructured", dict(amount=a)) for a in ((0.5, 0.9, 0.99) if quick else (0.5, 0.8, 0.9, 0.95, 0.99))]
    cases += [("n:m", dict(structure="n:m", n=2, m=4)),
              ("block 4x4", dict(amount=0.8, structure="block", block=(4, 4))),
              ("kernel", dict(amount=0.8, structure="kernel")),
              ("channel", dict(amount=0.5, structure="channel"))]
    records = []
    for label, kwargs in cases:
        op = sparseconv.prune(weight, **kwargs)
        csr = op.to_scipy()
        ref = op.to_dense().astype(np.float64) @ cols.astype(np.float64)
        contenders = [
            Contender("sparseconv", lambda: op @ cols, "numba"),
            Contender("scipy", lambda: csr @ cols, "scipy"),
            Contender("dense gemm", lambda: matrix @ cols, "openblas", reference=dense_out),
        ]
        results = run(contenders, ref, repeat=repeat or (3 if quick else 7), min_sample_s=0.05)
        rec = {"case": label, "sparsity": 1 - op.density, "nnz": op.nnz,
               "sparseconv_s": _med(results, "sparseconv"), "scipy_s": _med(results, "scipy"),
               "dense_s": _med(results, "dense gemm"), "useful_flops": 2 * op.nnz * cols.shape[1]}
        records.append(rec)
        progress(f"csr {label} {rec['sparsity']:.0%}: sparseconv {rec['sparseconv_s'] * 1e3:.2f} ms, "
                 f"scipy {rec['scipy_s'] * 1e3:.2f} ms, dense {rec['dense_s'] * 1e3:.2f} ms")
    return records


def csr_table(records):
    headers = ["case", "sparsity", "sparseconv ms", "useful GFLOP/s", "scipy ms", "x scipy", "dense GEMM ms",
               "x dense"]
    rows = [[r["case"], f"{r['sparsity']:.0%}", f"{r['sparseconv_s'] * 1e3:.2f}",
             f"{r['useful_flops'] / r['sparseconv_s'] / 1e9:.0f}", f"{r['scipy_s'] * 1e3:.2f}",
             f"{r['scipy_s'] / r['sparseconv_s']:.1f}", f"{r['dense_s'] * 1e3:.2f}",
             f"{r['dense_s'] / r['sparseconv_s']:.2f}"] for r in records]
    return headers, rows


def bench_groups(quick=False, repeat=None, progress=print):
    """Group convolutions on the conv benchmark's layers: sparseconv and torch, each against its own dense conv."""
    torch, F = _torch()
    rng = np.random.default_rng(0)
    batches = (1,) if quick else (1, 8)
    records = []
    for name, c, hw, k in LAYERS:
        pad = k // 2
        dense_w = (rng.standard_normal((c, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)).astype(np.float32)
        dense_op = sparseconv.DenseWeight(dense_w)
        for n in batches:
            x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
            dense_out = sparseconv.conv2d(x, dense_op, padding=pad)
            for g in ((2, 8, c) if quick else (2, 4, 8, 16, 32, c)):
                op = sparseconv.block_diagonal(dense_w, g)
                out = sparseconv.conv2d(x, op.to_weight(), padding=pad)  # the dense path, zero blocks included
                contenders = [
                    Contender("sparseconv", lambda: sparseconv.conv2d(x, op, padding=pad), "numba"),
                    Contender("sparseconv dense", lambda: sparseconv.conv2d(x, dense_op, padding=pad), "numba",
                              reference=dense_out),
                ]
                if torch is not None:
                    xt, wt, dt = torch.from_numpy(x), torch.from_numpy(op.weight), torch.from_numpy(dense_w)
                    contenders += [
                        Contender("torch", lambda: F.conv2d(xt, wt, padding=pad, groups=g).numpy(), "torch"),
                        Contender("torch dense", lambda: F.conv2d(xt, dt, padding=pad).numpy(), "torch",
                                  reference=dense_out),
                    ]
                results = run(contenders, out, repeat=repeat or (3 if quick else 5), min_sample_s=0.03)
                rec = {"layer": name, "N": n, "groups": g, "depthwise": g == c,
                       **{key: _med(results, key)
                          for key in ("sparseconv", "sparseconv dense", "torch", "torch dense")}}
                rec["realised"] = rec["sparseconv dense"] / rec["sparseconv"] / g
                rec["torch_realised"] = rec["torch dense"] / rec["torch"] / g
                if g == c:  # what a memory-bound kernel moves: the input and the output, once each
                    rec["depthwise_gbs"] = (x.nbytes + out.nbytes) / rec["sparseconv"] / 1e9
                    rec["torch_depthwise_gbs"] = (x.nbytes + out.nbytes) / rec["torch"] / 1e9
                records.append(rec)
                progress(f"groups {name} N={n} g={'dw' if g == c else g}: sparseconv realised {rec['realised']:.2f}, "
                         f"torch {rec['torch_realised']:.2f}")
    return records


def groups_table(records):
    headers = ["layer", "N", "groups", "sparseconv ms", "dense ms", "realised", "torch ms", "torch dense ms",
               "torch realised", "torch / sparseconv", "dw GB/s", "torch dw GB/s"]
    rows = [[r["layer"], r["N"], "dw" if r["depthwise"] else r["groups"], f"{r['sparseconv'] * 1e3:.2f}",
             f"{r['sparseconv dense'] * 1e3:.2f}", f"{r['realised']:.2f}", f"{r['torch'] * 1e3:.2f}",
             f"{r['torch dense'] * 1e3:.2f}", f"{r['torch_realised']:.2f}", f"{r['torch'] / r['sparseconv']:.2f}",
             f"{r['depthwise_gbs']:.1f}" if r["depthwise"] else "", f"{r['torch_depthwise_gbs']:.1f}"
             if r["depthwise"] else ""]
            for r in records]
    return headers, rows


def bench_lowrank(quick=False, repeat=None, progress=print):
    """Rank C/2, C/4, C/8 (two convolutions) against the dense conv2d, on the 3x3 layers."""
    rng = np.random.default_rng(0)
    batches = (1,) if quick else (1, 8)
    records = []
    for name, c, hw, k in LAYERS:
        if k == 1:
            continue
        dense_w = (rng.standard_normal((c, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)).astype(np.float32)
        dense_op = sparseconv.DenseWeight(dense_w)
        for n in batches:
            x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
            dense_out = sparseconv.conv2d(x, dense_op, padding=1)
            for div in (2, 4, 8):
                op = sparseconv.low_rank(dense_w, rank=c // div)
                out = sparseconv.conv2d(x, sparseconv.DenseWeight(op.to_weight()), padding=1)
                contenders = [
                    Contender("low rank", lambda: sparseconv.conv2d(x, op, padding=1), "numba"),
                    Contender("dense", lambda: sparseconv.conv2d(x, dense_op, padding=1), "numba",
                              reference=dense_out),
                ]
                results = run(contenders, out, repeat=repeat or (3 if quick else 5), min_sample_s=0.03)
                reduction = dense_op.conv_cost(x.shape, padding=1).macs / op.conv_cost(x.shape, padding=1).macs
                rec = {"layer": name, "N": n, "rank": c // div, "flop_reduction": reduction,
                       "low_rank_s": _med(results, "low rank"), "dense_s": _med(results, "dense")}
                rec["realised"] = rec["dense_s"] / rec["low_rank_s"] / reduction
                records.append(rec)
                progress(f"lowrank {name} N={n} r={c // div}: realised {rec['realised']:.2f}")
    return records


def lowrank_table(records):
    headers = ["layer", "N", "rank", "FLOP reduction", "low rank ms", "dense ms", "speedup", "realised"]
    rows = [[r["layer"], r["N"], r["rank"], f"{r['flop_reduction']:.2f}", f"{r['low_rank_s'] * 1e3:.2f}",
             f"{r['dense_s'] * 1e3:.2f}", f"{r['dense_s'] / r['low_rank_s']:.2f}", f"{r['realised']:.2f}"]
            for r in records]
    return headers, rows


def bench_sparse(quick=False, parts=PARTS, repeat=None, progress=print):
    """Run the chosen parts; return plain data: environment and one list of records per part."""
    result = {"environment": environment()}
    runners = {"csr": bench_csr, "groups": bench_groups, "lowrank": bench_lowrank}
    for part in parts:
        result[part] = runners[part](quick=quick, repeat=repeat, progress=progress)
    if "groups" in parts:
        result["stream_triad_gbs"] = sparseconv.system.stream_triad(1 << (20 if quick else 24))
    return result


TABLES = {"csr": csr_table, "groups": groups_table, "lowrank": lowrank_table}


def print_tables(result, parts, echo=print):
    for part in parts:
        echo(f"\n{part}:")
        if part == "groups":
            echo(f"STREAM triad on numba's threads: {result['stream_triad_gbs']:.1f} GB/s; dw GB/s = (input + "
                 "output bytes) / time of the depthwise conv")
        echo(format_table(*TABLES[part](result[part])))
