# %% [markdown]
# # 5. IGCV1: two group convolutions and a permutation
#
# Zhang, Qi, Xiao, Wang, "Interleaved Group Convolutions for Deep Neural
# Networks" (ICCV 2017). Take G = L·M channels.
#
# - **Primary** group conv: L partitions of M channels, a kH×kW conv inside
#   each (block-diagonal W_p, L blocks).
# - **Permutation** P: secondary partition m takes the m-th channel of every
#   primary partition (ShuffleNet's channel shuffle).
# - **Secondary** group conv: M partitions of L channels, 1×1 (block-diagonal
#   W_d, M blocks), then Pᵀ back.
#
# As a matrix: W = Pᵀ·W_d·P·W_p, a product of structured-sparse factors that
# is dense again.

# %%
import os

import numpy as np

import sparseconv as sc
from sparseconv import theory
from sparseconv.study.network import load_network

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## The factors, as pictures
#
# `plot.structure` draws the nonzero pattern of every factor and of the
# product. The two block-diagonal factors are sparse; the permutation
# interleaves them; the product is dense.

# %%
op = sc.IGCV1.random(L=4, M=4, seed=0)
fig = sc.plot.structure(op)
plt.show()
dense = op.to_dense()
print(f"product: {np.count_nonzero(dense)} of {dense.size} entries nonzero; "
      f"factors store {op.num_params} numbers")
assert np.count_nonzero(dense) == dense.size

# %% [markdown]
# ## It is what the torch pipeline computes
#
# grouped conv → channel shuffle → grouped 1×1 conv → shuffle back equals
# one convolution with the multiplied-out weight.

# %%
x = rng.standard_normal((2, 16, 9, 9)).astype(np.float32)
y = sc.conv2d(x, op, padding=1)
assert np.allclose(y, sc.conv2d(x, op.to_weight(), padding=1), atol=1e-4)
shuffle = sc.channel_shuffle_permutation(16, 4)
step = sc.conv2d(x, op.primary.weight, padding=1, groups=4)[:, shuffle.perm]
step = sc.conv2d(step, op.secondary.weight, groups=4)[:, shuffle.inverse().perm]
assert np.allclose(y, step, atol=1e-4)
print("IGCV1 conv2d == primary -> shuffle -> secondary -> shuffle back")

# %% [markdown]
# ## The complementary condition: count the paths
#
# Entry (o, c) of `paths(op)` counts the chains of channels through the
# factors' patterns that join input c to output o. IGCV1 with the
# interleaving permutation joins every pair by exactly one path: **strictly
# complementary**. With the identity permutation most pairs are never joined.

# %%
counts = sc.paths(op)
assert np.all(counts == 1) and sc.complementary(op) == "strict"
no_shuffle = sc.ProductWeight([op.secondary, op.primary])
print("with the interleaving permutation:", sc.complementary(op),
      "| without:", sc.complementary(no_shuffle),
      f"({np.count_nonzero(sc.paths(no_shuffle))} of 256 pairs joined)")
fig, axes = plt.subplots(1, 2, figsize=(6.4, 3))
for ax, (name, prod) in zip(axes, (("interleaved: 1 path per pair", op), ("no permutation", no_shuffle))):
    counts_i = sc.paths(prod)
    im = ax.imshow(counts_i, cmap="Greys", vmin=0, vmax=max(1, counts_i.max()), interpolation="nearest")
    ax.set(title=name, xlabel="input channel c", ylabel="output channel o")
    ax.grid(False)
fig.colorbar(im, ax=axes, label="paths from c to o", shrink=0.8)
plt.show()

# %% [markdown]
# ## Wider at the same budget
#
# Parameters: L·M²·S + M·L² = G·(M·S + L) with S = kH·kW. A regular conv on C
# channels has C²·S. For a fixed M, G·(M·S + L) ≤ C²·S allows G > C whenever
# L ≥ 2: the interleaved layer is wider for the same parameters, which is the
# paper's argument for why it can be better.

# %%
C, S = 64, 9
budget = theory.regular_params(C, S)
for M in (2, 4, 8, 16):
    L, G, params = theory.igcv1_equal_width(C, S, M)
    print(f"M={M:2d}: L={L:3d}, width G={G:4d} with {params:,} parameters (regular: C={C}, {budget:,})")
G, L, M = theory.igcv1_max_width(budget, S)
print(f"widest IGCV1 within {budget:,} parameters: G={G} (L={L}, M={M})")
assert G > C

# %% [markdown]
# Every L at once: for each number of primary partitions, the widest IGCV1
# (largest M) that fits the budget of the regular 64-channel conv.

# %%
Ls = np.arange(1, 129)
widths = [L * max((m for m in range(1, 2 * C) if theory.igcv1_params(int(L), m, S) <= budget), default=0)
          for L in Ls]
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot(Ls, widths, marker="o", markersize=2, color=sc.plot.PALETTE[5])
ax.plot(L, G, marker="*", markersize=12, color=sc.plot.PALETTE[6], linestyle="none", label=f"widest: L={L}, G={G}")
ax.axhline(C, color="#999999", linestyle=":", label=f"regular conv, C={C}")
ax.set(xscale="log", xlabel="primary partitions L", ylabel="width G = L M",
       title=f"IGCV1 width at the parameters of a {C}-channel 3x3 conv")
ax.legend()
plt.show()

# %% [markdown]
# ## The two extremes
#
# L = 1 is a regular convolution followed by a per-channel scale; M = 1 is a
# depthwise convolution followed by a dense 1×1: the Xception / MobileNet
# separable block.

# %%
regular = sc.IGCV1.random(L=1, M=8, seed=1, dtype=np.float64)
scale = regular.secondary.weight.reshape(8)
assert np.allclose(regular.to_weight(), scale[:, None, None, None] * regular.primary.weight)
separable = sc.IGCV1.random(L=8, M=1, seed=2, dtype=np.float64)
xs = rng.standard_normal((1, 8, 6, 6))
depthwise_then_pointwise = sc.conv2d(sc.conv2d(xs, separable.primary.weight, padding=1, groups=8),
                                     separable.secondary.weight)
assert np.allclose(sc.conv2d(xs, separable, padding=1), depthwise_then_pointwise)
print("L=1: regular conv x scale; M=1: depthwise + pointwise")

# %% [markdown]
# ## Fitting an IGCV1 to a trained layer
#
# Each factor is linear when the other is fixed, so alternating least
# squares fits both; the error never increases.

# %%
W = load_network()["conv2.weight"]
fit = sc.igcv1(W, L=4, M=16, max_iter=10 if QUICK else 40)
assert all(b <= a + 1e-12 for a, b in zip(fit.history, fit.history[1:]))
print(f"IGCV1 (4, 16) fit to conv2: relative error {fit.history[0]:.3f} -> {fit.history[-1]:.3f}, "
      f"{fit.num_params:,} parameters (dense {W.size:,})")
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(np.arange(len(fit.history)), fit.history, marker=".", color=sc.plot.PALETTE[5])
ax.set(xlabel="ALS sweep", ylabel="relative weight error", title="Fitting IGCV1 (L=4, M=16) to conv2")
plt.show()

# %% [markdown]
# ## Summary
#
# - IGCV1 = Pᵀ·W_d·P·W_p: two block-diagonal factors with an interleaving
#   permutation, dense as a product.
# - Strictly complementary: one path between every input and output channel.
# - At the parameters of a regular conv it can be wider; L = 1 and M = 1 are
#   the regular conv and the separable block.
#
# ## Exercises
#
# 1. Replace the interleaving permutation by a random one: is the product
#    still complementary? Strictly?
# 2. Plot the width G against L at a fixed budget (`figures/igcv1_width.png`
#    does it for C = 64): where is the maximum, and why?
# 3. Time `sc.conv2d` with IGCV1 (L, M) for L = 2 … 16 on a 64-channel layer
#    (`sparseconv bench igc`): which shapes realise their MAC reduction?
#
# Solutions: [`solutions/s05_igcv1.py`](solutions/s05_igcv1.py)
# (the test suite runs them and checks their answers).
