# %% [markdown]
# # 1. A convolution is a matrix times a vector
#
# Every idea in this library starts here. A convolution layer slides C_out
# filters of shape (C_in, kH, kW) over an input; at each output pixel it takes
# the dot product of each filter with the input patch under it. Unfold each
# patch into a column (**im2col**), stack the filters as the rows of a matrix
# W of shape (C_out, C_in·kH·kW), and the whole layer is one product:
#
# $$Y = W \cdot \mathrm{im2col}(x).$$
#
# Every way of making CNNs cheaper in the tutorials that follow is a way of
# making this matrix W cheaper.

# %%
import os
import time

import numpy as np
from matplotlib.patches import Rectangle

import sparseconv as sc

plt = sc.plot.use_style()  # the library's figure style and colour-blind-safe palette
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## im2col by hand: one 36-entry column
#
# Take 4 input channels and a 3×3 kernel. The patch under one output pixel
# has 4 × 3 × 3 = 36 numbers; im2col lays them out channel by channel, row by
# row, as one column of 36 entries. Notation: N images, C_in input channels,
# H × W pixels; C_out filters of kH × kW (S = kH·kW taps).

# %%
x = rng.standard_normal((1, 4, 5, 5))            # (N, C_in, H, W)
cols = sc.im2col(x, kernel_size=3, padding=0)    # (C_in*kH*kW, N*H_out*W_out)
print("columns:", cols.shape)                    # 36 rows, one column per output pixel (3 x 3 = 9)

# the column of output pixel (row 1, column 2), built by hand from the patch
patch = x[0, :, 1:4, 2:5]                        # (C_in, kH, kW)
by_hand = patch.reshape(-1)                      # channel by channel, row by row: 36 entries
assert np.array_equal(cols[:, 1 * 3 + 2], by_hand)

# %% [markdown]
# The same thing as a picture, drawn from these arrays: the patch under
# output pixel (1, 2) in each of the 4 channels, and the column it becomes.
# Read the column top to bottom: the 9 values of channel 0 row by row, then
# channel 1, and so on.

# %%
fig, axes = plt.subplots(1, 5, figsize=(9, 2.6), gridspec_kw=dict(width_ratios=[1, 1, 1, 1, 0.45]))
lim = np.abs(x).max()
for c, ax in enumerate(axes[:4]):
    ax.imshow(x[0, c], cmap="coolwarm", vmin=-lim, vmax=lim)
    ax.add_patch(Rectangle((2 - 0.5, 1 - 0.5), 3, 3, fill=False, edgecolor="black", linewidth=2))
    ax.set(title=f"x[0, {c}]", xticks=[], yticks=[])
    ax.grid(False)
axes[4].imshow(cols[:, [1 * 3 + 2]], cmap="coolwarm", vmin=-lim, vmax=lim, aspect="auto")
axes[4].set(title="its column\n(36 rows)", xticks=[], yticks=[0, 9, 18, 27])
axes[4].grid(False)
fig.suptitle("im2col: the 3x3 patch of every channel under output pixel (1, 2) becomes one column")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## W as stacked kernels, and conv2d = W @ cols
#
# Each filter (C_in, kH, kW) flattens into one row of W in the same order,
# so row o of W times column p is the dot product of filter o with patch p.

# %%
weight = rng.standard_normal((6, 4, 3, 3))       # (C_out, C_in, kH, kW)
W = weight.reshape(6, -1)                        # (C_out, C_in*kH*kW) = (6, 36)
Y = W @ cols                                     # (C_out, H_out*W_out)
y = sc.conv2d(x, weight)                         # the library's convolution
assert np.allclose(Y.reshape(1, 6, 3, 3), y)
print("conv2d == W @ im2col:", np.abs(Y.reshape(y.shape) - y).max())

# %% [markdown]
# The product drawn to scale: W (6 × 36, one row per filter, its 4 channels'
# 3 × 3 kernels side by side) times the columns (36 × 9, one per output
# pixel) is Y (6 × 9, one row per output channel). Row 0 of W times
# column 5 of the columns is entry (0, 5) of Y.

# %%
fig, axes = plt.subplots(1, 3, figsize=(9, 2.8), gridspec_kw=dict(width_ratios=[36, 9, 9]))
for ax, (name, m) in zip(axes, (("W  (C_out x C_in kH kW)", W), ("im2col(x)  (C_in kH kW x H_out W_out)", cols),
                                ("Y = W @ im2col(x)", Y))):
    ax.imshow(m, cmap="coolwarm", vmin=-np.abs(m).max(), vmax=np.abs(m).max(), aspect="equal")
    ax.set(title=name, xticks=[], yticks=[])
    ax.grid(False)
for c in range(1, 4):  # the kernels of one filter, channel after channel
    axes[0].axvline(9 * c - 0.5, color="black", linewidth=1)
axes[0].add_patch(Rectangle((-0.5, -0.5), 36, 1, fill=False, edgecolor="black", linewidth=2))
axes[1].add_patch(Rectangle((5 - 0.5, -0.5), 1, 36, fill=False, edgecolor="black", linewidth=2))
axes[2].add_patch(Rectangle((5 - 0.5, -0.5), 1, 1, fill=False, edgecolor="black", linewidth=2))
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Cross-correlation, not convolution
#
# What deep learning calls convolution does not flip the kernel: it is
# cross-correlation. The convolution of signal processing flips it, which
# only reorders the learned weights. scipy shows the difference.

# %%
from scipy import signal

img, k = rng.standard_normal((5, 5)), rng.standard_normal((3, 3))
dl = sc.conv2d(img[None, None], k[None, None])[0, 0]
assert np.allclose(dl, signal.correlate2d(img, k, mode="valid"))
assert np.allclose(dl, signal.convolve2d(img, k[::-1, ::-1], mode="valid"))
print("DL 'convolution' = correlate2d; = convolve2d with the kernel flipped")

# %% [markdown]
# ## col2im is the adjoint of im2col
#
# im2col copies each input pixel into every column whose patch covers it.
# Its adjoint, **col2im**, adds the columns back into the image. The
# backward pass of a convolution uses it; the defining identity is
# ⟨im2col(x), C⟩ = ⟨x, col2im(C)⟩ for every x and C.

# %%
C = rng.standard_normal(cols.shape)
lhs = np.vdot(sc.im2col(x, 3), C)
rhs = np.vdot(x, sc.col2im(C, x.shape, 3))
assert np.isclose(lhs, rhs)
print(f"<im2col(x), C> = {lhs:.6f} = <x, col2im(C)> = {rhs:.6f}")

# %% [markdown]
# ## Loops against im2col + GEMM, timed
#
# The definition is seven nested loops (image, filter, output row and
# column, channel, kernel row and column). The fast path gives the same
# numbers by handing the work to one matrix product (GEMM), tiled so that the
# column matrix never has to exist in full.

# %%
def loops_conv2d(x, w):
    """The definition, stride 1, padding 1, one multiply-add at a time."""
    n, c_in, h, wd = x.shape
    c_out, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    y = np.zeros((n, c_out, h, wd), x.dtype)
    for b in range(n):
        for o in range(c_out):
            for r in range(h):
                for q in range(wd):
                    acc = 0.0
                    for c in range(c_in):
                        for i in range(kh):
                            for j in range(kw):
                                acc += w[o, c, i, j] * xp[b, c, r + i, q + j]
                    y[b, o, r, q] = acc
    return y


n, c, hw = (1, 4, 10) if QUICK else (1, 8, 16)
xb = rng.standard_normal((n, c, hw, hw)).astype(np.float32)
wb = rng.standard_normal((c, c, 3, 3)).astype(np.float32)

def best_of(f, repeat=3):
    f()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times)

slow = loops_conv2d(xb, wb)
assert np.allclose(slow, sc.conv2d(xb, wb, padding=1), atol=1e-4)
t_loop = best_of(lambda: loops_conv2d(xb, wb), repeat=1)
t_fast = best_of(lambda: sc.conv2d(xb, wb, padding=1))
print(f"loops {t_loop * 1e3:.1f} ms, im2col + GEMM {t_fast * 1e3:.3f} ms: {t_loop / t_fast:,.0f}x faster")


# %% [markdown]
# ## The cost of the matrix
#
# A dense layer does C_out · C_in · kH · kW multiply-adds (MACs) per output
# pixel. The cost model counts them, and the storage, for every operator.

# %%
op = sc.DenseWeight(wb)
cost = sc.conv_cost(op, xb.shape, padding=1)
print(f"{op.num_params} parameters, {op.nbytes} bytes, {cost.macs:,.0f} MACs for this input")
assert cost.macs == c * c * 9 * n * hw * hw

# %% [markdown]
# ## Summary
#
# - im2col turns each receptive field into a column; the layer is W @ cols.
# - Deep-learning convolution is cross-correlation; col2im is im2col's adjoint.
# - The same numbers come out of loops and out of a GEMM; the GEMM is orders
#   of magnitude faster (the ratio printed above is this machine's).
#   Everything after this makes W cheaper.
#
# ## Exercises
#
# 1. Add `stride=2` and `dilation=2` to the im2col call: which columns and
#    which entries change?
# 2. Check the adjoint identity with padding 1. Why does col2im then drop
#    what falls on the padding?
# 3. `sc.reference.conv2d` loops only over filters and taps and lets NumPy
#    do the rest. Time it between the two above: where does it land, and why?
#
# Solutions: [`solutions/s01_convolution_is_a_matrix_product.py`](solutions/s01_convolution_is_a_matrix_product.py)
# (the test suite runs them and checks their answers).
