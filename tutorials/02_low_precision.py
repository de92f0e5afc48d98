# %% [markdown]
# # 2. Cheap entries: binary, integer and shared weights
#
# The first family keeps the matrix W and makes its *entries* cheap. Three
# ways, each a factorization of W with its own storage, cost and error:
#
# - **binary**: W ≈ diag(α)·B with B ∈ {−1, +1} (Rastegari et al., "XNOR-Net:
#   ImageNet Classification Using Binary Convolutional Neural Networks");
# - **integer**: W ≈ diag(s)·(Q − z), Q integers of b bits;
# - **shared**: W = codebook[idx], k centroids found by k-means (Han, Mao,
#   Dally, "Deep Compression").

# %%
import os

import numpy as np

import sparseconv as sc
from sparseconv.study.network import load_network

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)
W = load_network()["conv2.weight"]          # a real trained layer: (64, 64, 3, 3)
x = rng.standard_normal((4 if QUICK else 16, 64, 14, 14)).astype(np.float32)

# %% [markdown]
# ## Binary weights: multiplications become additions
#
# With the signs B fixed, the best scale is α = ⟨W, B⟩/⟨B, B⟩ = mean |w|
# (per output channel). Then W @ x = α·(Σ_k ±x_k): each term is added or
# subtracted, never multiplied. sparseconv's add-only kernel computes
# α·(Σ x − 2·Σ_{w<0} x), one addition per negative weight. By default
# `conv2d` and `@` run the signs decoded once to floats with the dense
# kernels instead (`binary.method` is `"decoded"`): on a CPU an FMA costs
# what an addition costs, so the dense GEMM is faster. Set
# `binary.method = "add-only"` to run the kernel that saves the
# multiplications.

# %%
binary = sc.binarize(W)
print(f"alpha of the first 4 channels: {binary.alpha[:4].round(4)}")
print(f"storage: {binary.nbytes:,} bytes vs {W.nbytes:,} (signs packed 64 to a word)")
cols = sc.im2col(x[:1], 3, padding=1)
assert np.allclose(binary @ cols, binary.to_dense() @ cols, atol=1e-3)
for method in binary.methods:  # the cost model prices what runs
    binary.method = method
    print(f"method {method!r}: {binary.cost(1).mults:,} multiplications per column")
binary.method = "decoded"
print(f"weight error {sc.relative_error(binary, W):.3f}")

# %% [markdown]
# ## Binary inputs: dot products become XNOR + popcount
#
# If the inputs are binarized too, a dot product of n signs is
# n − 2·popcount(a XOR b): each differing sign contributes −1, each agreeing
# one +1. Pack 64 signs into one 64-bit word and one XOR plus one popcount
# instruction handles 64 multiply-adds. Here is one word by hand.

# %%
a = rng.standard_normal(64)
b = rng.standard_normal(64)
def bits(v):
    """One 64-bit word: bit i set where v[i] is negative (sign -1)."""
    return sum(1 << i for i in range(64) if v[i] < 0)


word_a, word_b = bits(a), bits(b)
by_bits = 64 - 2 * bin(word_a ^ word_b).count("1")
by_signs = int(np.sum(np.where(a < 0, -1, 1) * np.where(b < 0, -1, 1)))
assert by_bits == by_signs
print(f"{word_a:016x} XOR {word_b:016x}: popcount {bin(word_a ^ word_b).count('1')}, dot = {by_bits}")

# %% [markdown]
# The two words and their XOR, bit by bit (a bit is set where the sign is
# −1): the XOR is set exactly where the signs differ, and the dot product
# is the 64 agreements minus twice the disagreements.

# %%
rows = np.array([[(w >> i) & 1 for i in range(64)] for w in (word_a, word_b, word_a ^ word_b)])
fig, ax = plt.subplots(figsize=(9, 1.6))
ax.imshow(rows, cmap="Greys", aspect="auto", vmin=0, vmax=1.4)
ax.set(yticks=range(3), yticklabels=["a (signs)", "b (signs)", "a XOR b"], xlabel="bit i (sign of entry i)",
       title=f"popcount(a XOR b) = {rows[2].sum()} differing signs: dot = 64 - 2 x {rows[2].sum()} = {by_bits}")
ax.set_xticks(range(0, 64, 8))
ax.grid(False)
fig.tight_layout()
plt.show()

# %% [markdown]
# sparseconv's XNOR kernel does this for whole matrices, with a popcount it
# adds to numba (LLVM's `ctpop`, the hardware `popcnt` where the CPU has
# one). `sparseconv bench lowp` times it against the float GEMM; here, one
# product of a 64 × 576 sign matrix with a batch of columns.

# %%
xnor = sc.binarize(W, activations="binary", activation_scale=False)
signs_x = np.where(cols < 0, -1.0, 1.0)
exact = xnor.signs.astype(np.float64) @ signs_x * xnor.alpha[:, None]
assert np.allclose(xnor @ cols, exact, rtol=1e-6)

from sparseconv.bench.harness import Contender, run

big = sc.im2col(x, 3, padding=1)                     # (576, N*14*14)
dense_W = W.reshape(64, -1)
signs_big = np.where(big < 0, -1.0, 1.0)
results = run([Contender("float GEMM", lambda: dense_W @ big, "openblas", reference=dense_W @ big),
               Contender("XNOR-popcount", lambda: xnor @ big, "numba",
                         reference=xnor.signs.astype(np.float64) @ signs_big * xnor.alpha[:, None])],
              None, repeat=3 if QUICK else 7, min_sample_s=0.02)
t_gemm, t_xnor = (r.median_s for r in results)
print(f"float GEMM {t_gemm * 1e3:.2f} ms, XNOR-popcount incl. packing the inputs {t_xnor * 1e3:.2f} ms")


# %% [markdown]
# ## Integer quantization
#
# Round each weight to one of 2^b levels: every entry is then within half a
# step s/2 of the original. With 8-bit inputs as well, the product is
# integer multiply-accumulate (int8 × int8 → int32).

# %%
for bits in (8, 4, 2):
    q = sc.quantize(W, bits)
    err = np.abs(q.to_weight() - W).reshape(64, -1).max(axis=1)
    assert np.all(err <= q.scale / 2 + 1e-6)
    print(f"{bits} bits: {q.nbytes:6,} bytes, weight error {sc.relative_error(q, W):.4f}")

# %% [markdown]
# The staircase: each weight of one output channel against the value it is
# stored as, at 2, 3 and 4 bits (symmetric: the steps are the channel's
# max |w| divided into 2^(b−1) − 1 levels each side of zero).

# %%
w0 = np.sort(W[0].reshape(-1))
fig, ax = plt.subplots(figsize=(5.5, 3.6))
ax.plot(w0, w0, color="#999999", linestyle=":", linewidth=1, label="no rounding")
for i, bits in enumerate((2, 3, 4)):
    q = sc.quantize(W[:1], bits)
    ax.step(w0, np.sort(q.to_weight().reshape(-1)), where="mid", color=sc.plot.PALETTE[i + 5],
            label=f"{bits} bits: {2 ** bits - 1} levels")
ax.set(xlabel="weight w (channel 0)", ylabel="stored value q(w)", title="Integer quantization is a staircase")
ax.legend()
plt.show()

# %%
q8 = sc.quantize(W, 8, activations=8).calibrate(x)
y_int = sc.conv2d(x, q8, padding=1)
y_ref = sc.conv2d(x, W, padding=1)
print(f"int8 weights and inputs: output error {np.linalg.norm(y_int - y_ref) / np.linalg.norm(y_ref):.4f}")

# %% [markdown]
# ## Weight sharing with k-means
#
# Deep Compression's observation: weights like 2.91, 3.06 and 3.21 can all be
# replaced by one centroid near 3. Store k centroids and a log2(k)-bit index
# per weight. The product can add up the inputs that share a centroid first
# and multiply only k times per output instead of once per weight.

# %%
toy = np.array([2.91, 3.06, 3.21, -1.02, -0.98, 1.01, 0.97]).reshape(1, 7, 1, 1)
shared = sc.kmeans_quantize(toy, n_clusters=3, per_channel=False, init="linear")
print("centroids:", np.sort(shared.codebook).round(3), "indices:", shared.idx)
assert np.allclose(np.sort(shared.codebook), [-1.0, 0.99, 3.06])
cb16 = sc.kmeans_quantize(W, n_clusters=16, per_channel=False)
fig, ax = plt.subplots(figsize=(6, 3.2))
ax.hist(W.reshape(-1), bins=200, color=sc.plot.PALETTE[2], label="weights of the trained layer")
for c in cb16.codebook:
    ax.axvline(c, color=sc.plot.PALETTE[6], linewidth=1)
ax.plot([], [], color=sc.plot.PALETTE[6], label="the 16 centroids k-means found")
ax.set(xlabel="weight", ylabel="count", title="k-means puts its centroids where the weights are")
ax.legend()
plt.show()

for k in (256, 16, 4):
    cb = sc.kmeans_quantize(W, n_clusters=k, per_channel=False)
    cb.method = "accumulate"  # the kernel that adds into k bins first, then multiplies k times
    cost = cb.cost(1)
    print(f"k={k:3d}: {cb.nbytes:6,} bytes, {cost.mults} multiplications per column (dense: {64 * 576}), "
          f"weight error {sc.relative_error(cb, W):.4f}")

# %% [markdown]
# ## Summary
#
# - Binary weights: 32× less storage, additions instead of multiplications;
#   binary inputs: XNOR + popcount, 64 multiply-adds per instruction pair.
# - Integer weights: every entry within half a step; 8-bit inputs make the
#   product integer arithmetic.
# - k-means: k multiplications per output, log2(k) bits per weight.
# - Saving multiplications is not saving time: on a CPU a float GEMM is so
#   well blocked that the add-only kernels are slower (see tutorial 9), so
#   weight-only operators run as their decoded weight unless you set
#   `method` to their own kernel.
#
# ## Exercises
#
# 1. Binarize with `scale="tensor"` and `scale=None`: how does the error change?
# 2. At which bit width does the quantized layer's output error first exceed 5%?
# 3. Compare `init="linear"` with `init="kmeans++"` for k = 4: which keeps the
#    large weights better, and why does Deep Compression prefer it?
#
# Solutions: [`solutions/s02_low_precision.py`](solutions/s02_low_precision.py)
# (the test suite runs them and checks their answers).
