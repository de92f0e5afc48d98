# %% [markdown]
# # 9. FLOPs are not time
#
# Every tutorial so far counted multiply-adds. A kernel's time also depends on
# how many bytes it moves and how regular its work is. This tutorial measures,
# on your machine, how much of each family's MAC reduction becomes speed, and
# why group and depthwise convolutions so often disappoint.

# %%
import os
import time

import numpy as np

import sparseconv as sc
from sparseconv.study.compare import compare

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## Every family: measured speedup against MAC reduction
#
# `compare` times each operator's conv2d against the dense conv2d on the
# same inputs, in the same run (real layer inputs of the digits network).
# On the dashed line a family turns all its saving into time; under it, the
# machine takes part of it back.

# %%
records = compare(quick=True, progress=False)
families = list(dict.fromkeys(r["family"] for r in records))
fig, ax = plt.subplots(figsize=(5.5, 4))
for f in families:  # one colour-marker pair per family (sparseconv.plot.family_style)
    pts = [r for r in records if r["family"] == f]
    st = sc.plot.family_style(f, families)
    ax.scatter([r["mac_reduction"] for r in pts], [r["speedup"] for r in pts], label=f, s=18, color=st["color"],
               marker=st["marker"])
lim = [0.5, 60]
ax.plot(lim, lim, "k--", linewidth=1)
ax.set(xscale="log", yscale="log", xlabel="MAC reduction (x)", ylabel="measured speedup (x)")
ax.legend(fontsize=6, ncol=2)
plt.show()
for r in sorted(records, key=lambda r: -r["mac_reduction"])[:6]:
    print(f"{r['family']:16s} {r['label']:20s} MACs /{r['mac_reduction']:5.1f}  time /{r['speedup']:5.2f}")
assert all(r["speedup"] > 0 and np.isfinite(r["speedup"]) for r in records)

# %% [markdown]
# ## The roofline idea
#
# A kernel is limited either by arithmetic (FLOPs per second the cores can
# do) or by memory (bytes per second the caches and RAM can deliver). Its
# **arithmetic intensity**, FLOPs per byte moved, says which: below the
# machine's ratio of peak FLOP rate to bandwidth, memory decides.
#
# The cost model counts both. Compare a dense 3×3 layer with a depthwise one
# on the same 64-channel, 56×56 input:

# %%
shape = (1, 64, 56, 56)
dense = sc.DenseWeight(rng.standard_normal((64, 64, 3, 3)).astype(np.float32))
depthwise = sc.BlockDiagonalWeight(rng.standard_normal((64, 1, 3, 3)).astype(np.float32), 64)
for name, op in (("dense 3x3", dense), ("depthwise 3x3", depthwise)):
    c = sc.conv_cost(op, shape, padding=1)
    print(f"{name:14s} {c.flops / 1e6:8.1f} MFLOP, {c.bytes_moved / 1e6:6.2f} MB, "
          f"{c.flops / c.bytes_moved:6.1f} FLOP/byte")
assert sc.conv_cost(depthwise, shape, padding=1).flops * 60 < sc.conv_cost(dense, shape, padding=1).flops

# %% [markdown]
# The depthwise layer does 64× fewer FLOPs but moves about as many bytes of
# activations: its intensity is far below any CPU's balance point, so it
# runs at memory speed, and its time shrinks much less than its FLOPs.

# %%
x = rng.standard_normal((1 if QUICK else 8,) + shape[1:]).astype(np.float32)

def best_of(f, repeat=5):
    f()
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        ts.append(time.perf_counter() - t)
    return min(ts)

t_dense = best_of(lambda: sc.conv2d(x, dense, padding=1))
t_dw = best_of(lambda: sc.conv2d(x, depthwise, padding=1))
print(f"dense {t_dense * 1e3:.2f} ms, depthwise {t_dw * 1e3:.3f} ms: {t_dense / t_dw:.1f}x faster "
      f"for 64x fewer FLOPs ({100 * t_dense / t_dw / 64:.0f}% of the reduction realised)")

# %% [markdown]
# ## The roofline, measured
#
# Two numbers describe the machine: the GEMM's FLOP rate (what a kernel with
# data reuse can reach) and the memory bandwidth of the STREAM triad (what a
# kernel that touches each byte once can reach). A kernel of intensity I
# FLOP/byte cannot run faster than min(peak, I × bandwidth): the roof. Each
# point below is one layer on this input, timed here, at the intensity the
# cost model gives it.

# %%
a = rng.standard_normal((1024, 1024)).astype(np.float32)
peak = 2 * 1024 ** 3 / best_of(lambda: a @ a) / 1e9                       # GFLOP/s
bandwidth = sc.system.stream_triad(n=1 << 22 if QUICK else 1 << 24)      # GB/s
layers = {
    "dense 3x3": dense,
    "depthwise 3x3": depthwise,
    "1x1": sc.DenseWeight(rng.standard_normal((64, 64, 1, 1)).astype(np.float32)),
    "groups=8 3x3": sc.block_diagonal(dense.weight, 8),
    "IGCV1 (4, 16)": sc.IGCV1.random(4, 16, seed=0),
    "low rank 16": sc.low_rank(dense.weight, rank=16),
}
points = {}
for name, op in layers.items():
    pad = 0 if op.kernel_shape[2] == 1 else 1
    c = sc.conv_cost(op, x.shape, padding=pad)
    t = best_of(lambda op=op, pad=pad: sc.conv2d(x, op, padding=pad))
    points[name] = (c.flops / c.bytes_moved, c.flops / t / 1e9)
fig, ax = plt.subplots(figsize=(6, 4))
intensity = np.logspace(-1, 3, 200)
ax.plot(intensity, np.minimum(peak, intensity * bandwidth), color="black", linewidth=1.5,
        label=f"roof: GEMM {peak:.0f} GFLOP/s, triad {bandwidth:.1f} GB/s")
for name, (ai, rate) in points.items():
    st = sc.plot.family_style(name, list(points))
    ax.plot(ai, rate, linestyle="none", marker=st["marker"], color=st["color"], markersize=8, label=name)
ax.axvline(peak / bandwidth, color="#999999", linestyle=":", linewidth=1)
ax.set(xscale="log", yscale="log", xlabel="arithmetic intensity (FLOP / byte, cost model)",
       ylabel="achieved GFLOP/s (measured)", title=f"Roofline of this machine, input {x.shape}")
ax.legend(fontsize=6, loc="lower right")
plt.show()
for name, (ai, rate) in points.items():
    print(f"{name:14s} {ai:7.1f} FLOP/byte, {rate:6.1f} GFLOP/s = {100 * rate / min(peak, ai * bandwidth):3.0f}% "
          "of its roof")

# %% [markdown]
# A point **above** the roof ran from the caches, not from memory: the triad
# measures the bandwidth of memory with arrays far larger than the caches,
# while one image's activations here (64 × 56 × 56 floats, 0.8 MB) fit in a
# core's L2. The roof is the bound for data that must come from memory; for
# data already in cache the bound is higher, which is why kernels tile their
# work to stay there.

# %% [markdown]
# ## What the library's kernels do about it
#
# - Group convolutions run one GEMM per group on im2col tiles that stay in
#   cache; groups too small for a GEMM (depthwise) run direct loops that
#   read each input row once per tap.
# - IGCV1 folds its two permutations into the strides of the secondary
#   GEMM: no copies.
# - Sparse kernels work through column tiles that fit in cache and pack a
#   tile when a row reuses it enough.
# - Binary and integer kernels keep their accumulators in registers
#   (written in LLVM IR) so that popcount and `vpdpbusd` run at their rate.
#
# `sparseconv bench sparse`, `bench igc` and `bench lowp` measure each of
# these against torch, scipy.sparse and the float GEMM.
#
# ## Summary
#
# - MACs count arithmetic; time also counts bytes and regularity.
# - Low arithmetic intensity (depthwise, 1×1 group convs, unstructured
#   sparsity, add-only kernels) is where FLOP savings fail to become speed.
# - Measure on your machine: the figure above is yours.
#
# ## Exercises
#
# 1. Compute the FLOP/byte of a 1×1 convolution with 256 channels on 14×14.
#    Is it compute- or memory-bound on your machine?
# 2. Run `sparseconv bench igc`: which (L, M) realise more than half their
#    MAC reduction, and why do small M not?
# 3. Find your machine's GEMM rate (`sparseconv bench conv` prints it) and
#    its memory bandwidth (time a large `np.copyto`): where is the balance point?
#
# Solutions: [`solutions/s09_flops_are_not_time.py`](solutions/s09_flops_are_not_time.py)
# (the test suite runs them and checks their answers).
