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
for amount in amounts:
    print(f"{amount:.0%} zeros: {t_dense / results[f'{amount:.0%} zeros'].median_s:5.2f}x the dense GEMM's speed")


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
