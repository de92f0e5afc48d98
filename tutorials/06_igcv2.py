# %% [markdown]
# # 6. IGCV2: products of more sparse matrices
#
# Xie, Wang, Zhang, Qi, "IGCV2: Interleaved Structured Sparse Convolutional
# Neural Networks" (CVPR 2018). If two structured-sparse factors make a dense
# matrix, more factors can make it with even fewer numbers:
#
# W = P_L·W_L ⋯ P_2·W_2·W_1,
#
# W_1 a channel-wise (depthwise) kH×kW conv, W_2 … W_L 1×1 group convs with
# K_l channels per branch, the P_l interleaving permutations.

# %%
import math
import os

import numpy as np

import sparseconv as sc
from sparseconv import theory

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## Strictly complementary when the branch sizes multiply to C
#
# Write a channel index in mixed radix with digits of bases K_2, …, K_L.
# Factor l mixes the channels that differ only in digit l. After all of them
# every input has reached every output, by exactly one path, if and only if
# ∏ K_l = C.

# %%
C = 8
op = sc.IGCV2.random(C, (2, 2, 2), seed=0)
assert sc.complementary(op) == "strict"
print("K = 2x2x2 on 8 channels:", sc.complementary(op), "| K = 2x2:",
      sc.complementary(sc.IGCV2.random(C, (2, 2), seed=0)))
fig = sc.plot.structure(op)
plt.show()

# %% [markdown]
# The path counts say why: with K = 2×2×2 every input reaches every output
# by exactly one chain of channels; with K = 2×2 (product 4, not 8) each
# output is reached from only half the inputs, by one path each.

# %%
fig, axes = plt.subplots(1, 2, figsize=(6.4, 3))
for ax, sizes_i in zip(axes, ((2, 2, 2), (2, 2))):
    counts_i = sc.paths(sc.IGCV2.random(C, sizes_i, seed=0))
    ax.imshow(counts_i, cmap="Greys", vmin=0, vmax=max(1, counts_i.max()), interpolation="nearest")
    ax.set(title=f"K = {'x'.join(map(str, sizes_i))}: paths in {sorted(set(counts_i.ravel().tolist()))}",
           xlabel="input channel", ylabel="output channel")
    ax.grid(False)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Parameters, and the balance condition
#
# Parameters: C·S (the channel-wise conv) + C·Σ K_l. With ∏ K_l = C fixed,
# Σ K_l is smallest when all K_l are equal (AM–GM): K = C^{1/(L−1)}. That
# is the **balance condition**: all 1×1 factors have the same parameters.
# Then the count C·S + (L−1)·C·C^{1/(L−1)} is smallest near L − 1 = ln C.

# %%
C, S = 64, 9
n = np.arange(2, 10)
balanced = [theory.igcv2_balanced(C, S, int(k))[1] for k in n]
best_real = int(n[int(np.argmin(balanced))])
sizes, best = theory.igcv2_optimal_factors(C, S)
print(f"real-valued optimum at L = {best_real} (L - 1 = {best_real - 1}, ln C = {math.log(C):.2f})")
print(f"best integer design: K = {'x'.join(map(str, sizes))}, {best:,} parameters "
      f"(regular conv: {theory.regular_params(C, S):,})")
assert abs((best_real - 1) - math.log(C)) <= 1
assert best == theory.igcv2_params(C, S, sizes) == sc.IGCV2.random(C, sizes).num_params
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(n, balanced, marker="o", color=sc.plot.PALETTE[5])
ax.set(xlabel="factors L", ylabel="parameters", title=f"IGCV2 on C = {C}")
plt.show()

# %% [markdown]
# ## As a convolution
#
# conv2d runs the factors one after another: the depthwise conv with the
# stride and padding, then each 1×1 group conv and permutation.

# %%
op = sc.IGCV2.random(64, sizes, seed=1)
x = rng.standard_normal((2, 64, 10, 10)).astype(np.float32)
assert np.allclose(sc.conv2d(x, op, padding=1), sc.conv2d(x, op.to_weight(), padding=1), atol=1e-4)
print(f"IGCV2 {sizes}: {op.num_params:,} parameters, {op.cost(1).macs:,.0f} MACs per pixel "
      f"(dense: {64 * 64 * 9:,})")

# %% [markdown]
# ## Fitting it to a trained layer
#
# The same alternating least squares as for IGCV1, one factor at a time.

# %%
from sparseconv.study.network import load_network

W = load_network()["conv2.weight"]
fit = sc.igcv2(W, (8, 8), max_iter=10 if QUICK else 40)
assert all(b <= a * (1 + 1e-10) for a, b in zip(fit.history, fit.history[1:]))
print(f"IGCV2 (8, 8) fit: error {fit.history[-1]:.3f} with {fit.num_params:,} parameters")

# %% [markdown]
# ## Summary
#
# - More factors, fewer numbers: C·S + C·Σ K_l parameters.
# - Strictly complementary iff the interleaving is right and ∏ K_l = C.
# - Balanced factors (equal K) minimise the count; about ln C of them.
#
# ## Exercises
#
# 1. For C = 96 (not a power), what does `igcv2_optimal_factors` choose?
# 2. Fit IGCV2 (4, 4, 4) and (8, 8) to conv2: which has the lower error per
#    parameter?
# 3. Why is a product of many 1×1 group convs slow on a CPU even when its MAC
#    count is tiny? (Tutorial 9.)
#
# Solutions: [`solutions/s06_igcv2.py`](solutions/s06_igcv2.py)
# (the test suite runs them and checks their answers).
