# %% [markdown]
# # 4. Zeros: pruning, sparse formats and group convolution
#
# Set most entries of W to zero and store only the others. Where the zeros
# fall decides everything: scattered zeros save storage but are hard to turn
# into time; zeros in blocks along the diagonal are a **group convolution**,
# fast and cheap, but its channel groups never meet.

# %%
import os

import numpy as np
import scipy.sparse

import sparseconv as sc
from sparseconv.study.network import load_network

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)
W = load_network()["conv2.weight"]            # (64, 64, 3, 3), a trained layer
M = W.reshape(64, -1)                          # (C_out, C_in*kH*kW) = (64, 576)

# %% [markdown]
# ## Pruning by magnitude, stored as CSR
#
# `prune(W, amount)` keeps the largest |w|. Compressed sparse rows store the
# kept values, their column indices, and where each row starts.

# %%
op = sc.prune(W, 0.9)
csr = scipy.sparse.csr_matrix(op.to_dense())
assert np.array_equal(op.arrays["indices"], csr.indices) and np.array_equal(op.arrays["indptr"], csr.indptr)
print(f"90% pruned: {op.nnz:,} values, {op.nbytes:,} bytes (dense {W.nbytes:,}), "
      f"weight error {sc.relative_error(op, W):.3f}")
print("row 0 keeps columns", op.arrays["indices"][:op.arrays["indptr"][1]][:8], "...")

# %% [markdown]
# The format on a piece small enough to read: the top-left 6 × 10 corner of
# the layer pruned to 70% zeros, and the three arrays CSR stores for it.
# `indptr[i]:indptr[i+1]` is where row i's values and column indices lie.

# %%
corner = sc.prune(M[:6, :10].reshape(6, 10, 1, 1), 0.7)
dense_corner, arr = corner.to_dense(), corner.arrays
fig, (ax, ax_t) = plt.subplots(2, 1, figsize=(7.5, 4.6), gridspec_kw=dict(height_ratios=[3, 1.3]))
ax.imshow(dense_corner != 0, cmap="Greys", vmin=0, vmax=1.6)
for (i, j), v in np.ndenumerate(dense_corner):
    if v:
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7)
ax.set(title=f"W[:6, :10] pruned to {corner.nnz} nonzeros", xticks=range(10), yticks=range(6))
ax.grid(False)
ax_t.axis("off")
for row, (name, values) in enumerate((("data", [f"{v:.2f}" for v in arr["data"]]),
                                      ("indices", arr["indices"]), ("indptr", arr["indptr"]))):
    ax_t.text(0, 0.8 - 0.35 * row, f"{name:8s} " + "  ".join(str(v) for v in values), family="monospace",
              fontsize=7, transform=ax_t.transAxes)
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Where does unstructured sparsity start to pay?
#
# One multiply-add per stored value sounds like a win at any sparsity, but a
# dense GEMM is blocked for registers and caches and a sparse product is not.
# Measured here, on this machine, against the dense float32 GEMM:

# %%
from sparseconv.bench.harness import Contender, run

cols = rng.standard_normal((576, 784 if QUICK else 3136)).astype(np.float32)
amounts = (0.5, 0.9, 0.99) if QUICK else (0.5, 0.8, 0.9, 0.95, 0.99)
contenders = [Contender("dense GEMM", lambda: M @ cols, "openblas", reference=M @ cols)]
for amount in amounts:
    p = sc.prune(W, amount)
    contenders.append(Contender(f"{amount:.0%} zeros", lambda p=p: p @ cols, "numba", reference=p.to_dense() @ cols))
# the harness checks each result first, then alternates the contenders, pausing when the thread runtime
# changes (OpenBLAS's idle threads spin and would slow the next kernel)
results = {r.name: r for r in run(contenders, None, repeat=3 if QUICK else 7, min_sample_s=0.02)}
assert all(r.ok for r in results.values())
t_dense = results["dense GEMM"].median_s
speed = [t_dense / results[f"{amount:.0%} zeros"].median_s for amount in amounts]
for amount, v in zip(amounts, speed):
    print(f"{amount:.0%} zeros: {v:5.2f}x the dense GEMM's speed")
fig, ax = plt.subplots(figsize=(5.5, 3.4))
ax.plot([100 * a for a in amounts], speed, marker="o", color=sc.plot.PALETTE[5], label="CSR kernel (measured)")
ax.plot([100 * a for a in amounts], [1 / (1 - a) for a in amounts], color=sc.plot.PALETTE[8], linestyle="--",
        label="MAC reduction 1 / (1 - sparsity)")
ax.axhline(1, color="black", linewidth=1, linestyle=":")
ax.set(yscale="log", xlabel="zeros (%)", ylabel="speed / dense GEMM (x)",
       title="Unstructured sparsity, measured on this machine")
ax.legend()
plt.show()


# %% [markdown]
# ## Block-diagonal = group convolution
#
# Split the channels into g groups and let group i of the outputs see only
# group i of the inputs: W becomes block-diagonal, 1/g of the parameters and
# work. This is exactly `groups=g` in a convolution.

# %%
g = 4
bd = sc.block_diagonal(W, g)
x = rng.standard_normal((2, 64, 14, 14)).astype(np.float32)
assert np.allclose(sc.conv2d(x, bd, padding=1), sc.conv2d(x, bd.weight, padding=1, groups=g), atol=1e-4)
print(f"groups={g}: {bd.num_params:,} parameters, error {sc.relative_error(bd, W):.3f}")
print(sc.paths(bd)[::8, ::8])  # every 8th channel: input c reaches output o only inside its group of 16
grouped = [sc.block_diagonal(W, groups) for groups in (2, 4, 16)]
fig, axes = plt.subplots(1, 3, figsize=(9, 2.2))
for ax, groups, op_g in zip(axes, (2, 4, 16), grouped):
    ax.imshow(op_g.to_dense() != 0, cmap="Greys", aspect="auto", interpolation="nearest")
    ax.set(title=f"groups={groups}: {op_g.num_params:,} weights", xticks=[], yticks=[])
    ax.grid(False)
fig.suptitle("block_diagonal(W, g) as a 64 x 576 matrix: each block is a group's C/g x (C/g)·9 kernels")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## What groups lose
#
# The path matrix above is block-diagonal too: channels of different groups
# never meet. Stacking group convolutions does not help, the blocks stay
# blocks, unless something **interleaves** the channels between them. That
# is the next tutorial.

# %%
two = sc.ProductWeight([sc.block_diagonal(np.ones((64, 64, 1, 1)), g), bd])
assert sc.complementary(two) is None
shuffled = sc.ProductWeight([sc.block_diagonal(np.ones((64, 64, 1, 1)), 16),
                             sc.channel_shuffle_permutation(64, g), bd])
assert sc.complementary(shuffled) is not None
print("two group convs:", sc.complementary(two), "| with a channel shuffle between:", sc.complementary(shuffled))
fig, axes = plt.subplots(1, 2, figsize=(6, 3))
for ax, (name, prod) in zip(axes, (("two group convs", two), ("with a channel shuffle between", shuffled))):
    ax.imshow(sc.paths(prod) > 0, cmap="Greys", interpolation="nearest")
    ax.set(title=name, xlabel="input channel", ylabel="output channel")
    ax.grid(False)
fig.suptitle("Which inputs reach which outputs (black: at least one path)")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Summary
#
# - Unstructured pruning saves storage; on a CPU it saves time only at high
#   sparsity (measured above: where the ratio crosses 1).
# - Block-diagonal W is a group convolution: 1/g of the cost, channels in
#   separate groups never meet.
# - A permutation between two group convolutions can connect every pair.
#
# ## Exercises
#
# 1. Prune with `structure="n:m", n=2, m=4` and `structure="block"`: compare
#    error and speed with unstructured pruning at the same density.
# 2. Time `sc.conv2d` with `block_diagonal(W, g)` for g = 2 … 64: where does
#    the speedup stop following 1/g?
# 3. Count the paths of the shuffled product: how many join each pair?
#
# Solutions: [`solutions/s04_sparse_and_group.py`](solutions/s04_sparse_and_group.py)
# (the test suite runs them and checks their answers).
