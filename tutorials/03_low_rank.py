# %% [markdown]
# # 3. Fewer dimensions: channels, rank and spatial separability
#
# A matrix of rank r is a product of a tall and a wide matrix. If W is (close
# to) low rank, the layer can be two thinner layers: a kH×kW convolution to r
# channels, then a 1×1 back to C_out. The SVD gives the best such pair
# (Eckart–Young). Two relatives: dropping whole channels, and splitting a
# kH×kW kernel into kH×1 and 1×kW filters (Jaderberg, Vedaldi, Zisserman,
# "Speeding up Convolutional Neural Networks with Low Rank Expansions").

# %%
import os

import numpy as np

import sparseconv as sc
from sparseconv.study.network import load_network

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## A 100 × 100 matrix as 100 × 10 times 10 × 100
#
# Storing and applying U (100 × 10) and V (10 × 100) takes 2,000 numbers and
# 2,000 multiply-adds per vector instead of 10,000: a fifth.

# %%
A = rng.standard_normal((100, 10)) @ rng.standard_normal((10, 100))    # rank 10 by construction
U, s, Vt = np.linalg.svd(A)
U10, V10 = U[:, :10] * s[:10], Vt[:10]                                    # (100, 10), (10, 100)
v = rng.standard_normal(100)
assert np.allclose(A @ v, U10 @ (V10 @ v))
print(f"dense: {A.size} numbers; factors: {U10.size + V10.size}; singular value 11: {s[10]:.2e}")

# %% [markdown]
# ## The spectrum of a real trained layer
#
# conv2 of the shipped digits network (64 × 576 as a matrix). A trained layer
# is not exactly low rank, but its energy is concentrated.

# %%
W = load_network()["conv2.weight"]
sv = np.linalg.svd(W.reshape(64, -1), compute_uv=False)
energy = np.cumsum(sv ** 2) / np.sum(sv ** 2)
fig, ax = plt.subplots(figsize=(5, 3))
ax.semilogy(np.arange(1, 65), sv, marker=".", color=sc.plot.PALETTE[5])
ax.set(xlabel="index", ylabel="singular value", title="conv2 of the digits network")
plt.show()
for r in (8, 16, 32):
    print(f"rank {r:2d} keeps {100 * energy[r - 1]:.1f}% of the energy")

# %% [markdown]
# ## Low rank as two convolutions, and the Eckart–Young check
#
# `low_rank(W, rank=r)` keeps the top r singular triplets. Its Frobenius
# error is exactly the energy it drops: ‖W − W_r‖² = Σ_{i>r} σ_i².

# %%
x = rng.standard_normal((2 if QUICK else 8, 64, 14, 14)).astype(np.float32)
for r in (32, 16, 8):
    op = sc.low_rank(W, rank=r)
    dropped = np.sqrt(np.sum(sv[r:] ** 2)) / np.linalg.norm(sv)
    assert np.isclose(sc.relative_error(op, W), dropped, rtol=1e-4)
    first, second = op.as_convs()                      # (r, 64, 3, 3) then (64, r, 1, 1)
    two_convs = sc.conv2d(sc.conv2d(x, first, padding=1), second)
    assert np.allclose(two_convs, sc.conv2d(x, op, padding=1), atol=1e-3)
    print(f"rank {r:2d}: {op.num_params:6,} parameters (dense {W.size:,}), error {dropped:.3f}")

# %% [markdown]
# Every rank at once: the measured error of `low_rank` (points) lies on the
# Eckart–Young curve computed from the spectrum alone (line), and the
# parameters grow linearly with r: the cost-error trade of this family is
# the spectrum's tail.

# %%
ranks = np.arange(1, 65)
measured = [sc.relative_error(sc.low_rank(W, rank=int(r)), W) for r in ranks[::4]]
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(ranks, np.sqrt(np.maximum(1 - energy, 0)), color=sc.plot.PALETTE[5], label="sqrt(dropped energy)")
ax.plot(ranks[::4], measured, "o", color=sc.plot.PALETTE[6], markersize=4, label="relative_error(low_rank(W, r), W)")
ax2 = ax.twinx()
ax2.plot(ranks, ranks * (64 + 576) / W.size, color=sc.plot.PALETTE[8], linestyle="--", label="parameters / dense")
ax2.set(ylabel="parameters / dense", ylim=(0, 1.1))
ax2.grid(False)
ax.set(xlabel="rank r", ylabel="relative weight error", title="Rank-r reconstruction of conv2")
ax.legend(loc="upper center")
ax2.legend(loc="center right")
plt.show()

# %% [markdown]
# ## Fewer channels
#
# The bluntest low rank: keep the output and input channels with the largest
# norms and drop the others (the small layer runs, dropped outputs are zero).

# %%
reduced = sc.reduce_channels(W, keep_out=0.5, keep_in=0.5)
print(f"half the channels: {reduced.num_params:,} parameters, error {sc.relative_error(reduced, W):.3f}")

# %% [markdown]
# ## Spatial separability
#
# A 3×3 kernel of rank 1 is an outer product of a 3×1 and a 1×3 filter.
# Jaderberg et al. apply the idea across channels: kH×1 filters to r
# intermediate channels, then 1×kW filters back.

# %%
k = np.outer([1.0, 2.0, 1.0], [1.0, 0.0, -1.0])          # the Sobel kernel: rank 1
img = rng.standard_normal((1, 1, 8, 8))
column = np.array([1.0, 2.0, 1.0]).reshape(1, 1, 3, 1)    # (C_out, C_in, kH, 1)
row = np.array([1.0, 0.0, -1.0]).reshape(1, 1, 1, 3)       # (C_out, C_in, 1, kW)
sep = sc.conv2d(sc.conv2d(img, column), row)               # 3 + 3 multiply-adds per pixel instead of 9
assert np.allclose(sep, sc.conv2d(img, k[None, None]))
fig, axes = plt.subplots(1, 3, figsize=(6, 2.2), gridspec_kw=dict(width_ratios=[1, 3, 3]))
for ax, (name, m) in zip(axes, (("3x1", column[0, 0]), ("1x3", row[0, 0]), ("3x1 @ 1x3 = Sobel", k))):
    ax.imshow(m, cmap="coolwarm", vmin=-2, vmax=2)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{v:g}", ha="center", va="center")
    ax.set(title=name, xticks=[], yticks=[])
    ax.grid(False)
fig.suptitle("A rank-1 kernel is an outer product: 3 + 3 multiply-adds instead of 9")
fig.tight_layout()
plt.show()
for r in (48, 24, 12):
    op = sc.spatial_low_rank(W, r)
    print(f"spatial rank {r}: {op.num_params:6,} parameters, error {sc.relative_error(op, W):.3f}")

# %% [markdown]
# ## Summary
#
# - Rank r turns one layer into two: r·(C_in·kH·kW + C_out) parameters and
#   multiply-adds per pixel instead of C_out·C_in·kH·kW.
# - The SVD truncation is optimal, and its error is the dropped energy.
# - Spatial separability works along the kernel's rows and columns instead.
#
# ## Exercises
#
# 1. Which rank keeps 90% of conv2's energy? Use `low_rank(W, energy=0.9)`.
# 2. Compare the output error of rank-16 low rank and spatial rank 24 (about
#    the same parameters) on the real layer inputs of `sparseconv.study.network`.
# 3. Why does `reduce_channels` lose more than `low_rank` at the same
#    parameter count?
#
# Solutions: [`solutions/s03_low_rank.py`](solutions/s03_low_rank.py)
# (the test suite runs them and checks their answers).
