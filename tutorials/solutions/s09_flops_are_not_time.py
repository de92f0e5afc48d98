"""Solutions to the exercises of tutorial 9. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import numpy as np

import sparseconv as sc
from sparseconv.bench.harness import Contender, run


def _medians(contenders):
    """{name: median seconds}, timed side by side by the bench harness (each result checked first)."""
    results = run(contenders, None, repeat=3, min_sample_s=0.01)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return {r.name: r.median_s for r in results}


def _balance():
    """(GEMM GFLOP/s, copy GB/s) measured here: a 1024^3 float32 GEMM, and np.copyto of 64 MiB."""
    a = np.random.default_rng(0).standard_normal((1024, 1024)).astype(np.float32)
    src = np.ones(1 << 24, np.float32)
    dst = np.empty_like(src)
    times = _medians([Contender("gemm", lambda: a @ a, "openblas", reference=a @ a),
                      Contender("copy", lambda: np.copyto(dst, src) or dst, "numpy", reference=src)])
    return 2 * 1024 ** 3 / times["gemm"] / 1e9, 2 * src.nbytes / times["copy"] / 1e9   # the copy reads and writes


def exercise_1():
    """A 1x1 conv with 256 channels on 14 x 14 (N = 1) does 2 C^2 H W FLOPs on (2 C H W + C^2) 4-byte
    values: about 39 FLOP/byte. That is above the balance point of a CPU like this project's (a few hundred
    GFLOP/s over ~10-20 GB/s), so it is compute-bound; the returned classification is your machine's."""
    c, hw = 256, 14 * 14
    by_hand = 2 * c * c * hw / (4 * (2 * c * hw + c * c))
    cost = sc.conv_cost(np.ones((c, c, 1, 1), np.float32), (1, c, 14, 14))
    assert np.isclose(cost.flops / cost.bytes_moved, by_hand, rtol=1e-6)
    assert 38 < by_hand < 40
    peak, bandwidth = _balance()
    return by_hand, "compute-bound" if by_hand > peak / bandwidth else "memory-bound"


def exercise_2():
    """With G = L M = 64 fixed, a small M means many primary groups of M channels: each output of the
    primary conv is a dot product of only M x 9 numbers, too short to fill the vector registers and reuse
    what is loaded, so those shapes realise less of their MAC cut. The realised fractions (speedup over the
    dense conv / MAC reduction) are returned for your machine; the outputs are checked against the
    multiplied-out weight's plain-loop conv."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((4, 64, 28, 28)).astype(np.float32)
    dense = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    contenders = [Contender("dense", lambda: sc.conv2d(x, dense, padding=1), "numba",
                            reference=sc.reference.conv2d(x, dense, padding=1))]
    cuts = {}
    for M in (4, 8, 16, 32):
        op = sc.IGCV1.random(L=64 // M, M=M, seed=M)
        cuts[M] = sc.conv_cost(dense, x.shape, padding=1).macs / sc.conv_cost(op, x.shape, padding=1).macs
        assert np.isclose(cuts[M], 64 * 9 / (M * 9 + 64 // M))   # dense C S against IGCV1's M S + L per channel
        contenders.append(Contender(f"M={M}", lambda op=op: sc.conv2d(x, op, padding=1), "numba",
                                    reference=sc.reference.conv2d(x, op.to_weight(), padding=1)))
    times = _medians(contenders)
    return {(64 // M, M): times["dense"] / times[f"M={M}"] / cuts[M] for M in cuts}


def exercise_3():
    """The balance point is the GEMM rate over the bandwidth, in FLOP/byte: kernels below it (depthwise,
    1x1 group convs) are memory-bound, kernels above it (dense 3x3, wide 1x1) compute-bound. Both rates are
    measured here and returned with their ratio."""
    peak, bandwidth = _balance()
    assert np.isfinite(peak) and np.isfinite(bandwidth) and peak > 0 and bandwidth > 0
    return peak, bandwidth, peak / bandwidth
