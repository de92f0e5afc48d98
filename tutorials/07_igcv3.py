# %% [markdown]
# # 7. IGCV3: low rank meets structured sparsity
#
# Sun, Li, Liu, Wang, "IGCV3: Interleaved Low-Rank Group Convolutions for
# Efficient Deep Neural Networks" (BMVC 2018). The block of the authors' code:
#
# 1. a 1×1 group conv with G1 groups **expanding** C_in → E = t·C_in channels;
# 2. a channel shuffle with G1 groups;
# 3. a 3×3 depthwise conv on the E channels;
# 4. a 1×1 group conv with G2 groups **reducing** E → C_out.
#
# Without its activations this is one matrix: W = W_3·D·P·W_1, a low-rank
# (through E) product of structured-sparse factors.

# %%
import os

import numpy as np

import sparseconv as sc

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
rng = np.random.default_rng(0)

# %% [markdown]
# ## The factors

# %%
op = sc.IGCV3.random(8, 8, expansion=2, groups=(2, 2), seed=0)
fig = sc.plot.structure(op)
plt.show()
print(f"E = {op.expand.shape[0]} expanded channels; {op.num_params} parameters (dense 8x8x3x3: {8 * 8 * 9})")

# %% [markdown]
# ## The loose complementary condition
#
# With G1, G2 > 1 every input reaches every output, but through groups of
# channels ("super-channels"), so several paths join most pairs: the
# condition is **loose**, not strict.

# %%
counts = sc.paths(op)
print("paths per (output, input) pair:", np.unique(counts))
assert sc.complementary(op) == "loose"
starved = sc.IGCV3.random(8, 12, expansion=1, groups=(8, 4))   # too few expanded channels per group
print("E/G2 = 2 channels per reducing group, from 2 of 8 expanding groups:", sc.complementary(starved))
fig, axes = plt.subplots(1, 2, figsize=(6.4, 3))
for ax, (name, prod) in zip(axes, (("t=2, groups (2, 2): loose", op), ("t=1, groups (8, 4): starved", starved))):
    counts_i = sc.paths(prod)
    im = ax.imshow(counts_i, cmap="Greys", vmin=0, interpolation="nearest")
    ax.set(title=name, xlabel="input channel", ylabel="output channel")
    ax.grid(False)
    fig.colorbar(im, ax=ax, shrink=0.7, label="paths")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## It is a convolution, strides included
#
# The stride applies to the depthwise factor; the 1×1 factors before it run
# at the input's resolution.

# %%
x = rng.standard_normal((2, 8, 10, 10))
for kwargs in (dict(padding=1), dict(stride=2, padding=1)):
    assert np.allclose(sc.conv2d(x, op, **kwargs), sc.conv2d(x, op.to_weight(), **kwargs), atol=1e-4)
print("IGCV3 conv2d == dense conv with the multiplied-out weight (stride 1 and 2)")

# %% [markdown]
# ## The IGCV3 block next to MobileNetV2's
#
# MobileNetV2's inverted residual block expands with a *dense* 1×1 conv;
# IGCV3 makes both 1×1 convs group convs and interleaves them, which frees
# parameters for more blocks: IGCV3-D is deeper at about the same size.
# `count_cost` counts both networks (group-aware MACs) at 224 × 224.

# %%
import sparseconv.torch as st

block = st.IGCV3Block(32, 32, expansion=6, groups=(2, 2))
print(block)
for name, build in (("MobileNetV2 1.0", st.mobilenet_v2), ("IGCV3-D 1.0", st.igcv3_d)):
    table = st.count_cost(build(), (1, 3, 224, 224))
    print(f"{name:16s} {table.params / 1e6:5.2f} M parameters, {table.macs / 1e6:6.1f} M MACs")
tables = {name: st.count_cost(build(), (1, 3, 224, 224))
          for name, build in (("MobileNetV2 1.0", st.mobilenet_v2), ("IGCV3-D 1.0", st.igcv3_d))}
fig, axes = plt.subplots(1, 2, figsize=(6.4, 2.8))
for ax, (what, unit, key) in zip(axes, (("parameters", "M", "params"), ("MACs at 224 x 224", "M", "macs"))):
    values = [getattr(t, key) / 1e6 for t in tables.values()]
    ax.bar(list(tables), values, color=[sc.plot.PALETTE[5], sc.plot.PALETTE[6]])
    ax.set(title=what, ylabel=unit)
fig.tight_layout()
plt.show()
mbv2 = st.count_cost(st.mobilenet_v2(), (1, 3, 224, 224))
assert mbv2.params == 3_504_872 and abs(mbv2.macs - 300e6) < 3e6   # torchvision's model; the paper's 300 M

# %% [markdown]
# ## Summary
#
# - IGCV3 = reduce · depthwise · shuffle · expand: low rank through E,
#   structured-sparse factors, loosely complementary.
# - Its block keeps MobileNetV2's shape with group 1×1 convs; at the same
#   size the network is deeper.
#
# ## Exercises
#
# 1. For which (expansion, G1, G2) on 8 channels is the block not
#    complementary at all? Explain with the path counts.
# 2. Fit `sc.igcv3` to conv2 of the digits network for t = 1, 2, 4: how does
#    the error trade against the parameters?
# 3. Print `count_cost(st.igcv3_d(), ...)` and find the layers with the most
#    MACs. Are they the ones with the most parameters?
#
# Solutions: [`solutions/s07_igcv3.py`](solutions/s07_igcv3.py)
# (the test suite runs them and checks their answers).
