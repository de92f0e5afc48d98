# %% [markdown]
# # 10. Compress your own network
#
# The path from reading to using: take a trained network, let `compare` try
# every family at every budget on every conv layer (one layer replaced at a
# time, scored on the network's own output), read which layers are
# sensitive, choose a family per layer, apply the choice, and measure what
# you got: accuracy, MACs and time.
#
# The network here is the shipped digits CNN, rebuilt in torch with its
# trained weights (tutorial 8). For your own, replace `model` and `images`:
# any `torch.nn.Module` in eval mode or an `.onnx` file (with
# `pip install 'sparseconv[onnx]'`), and a few hundred of its real inputs.
# The command line does the same: `sparseconv compare --torch model.pt
# --inputs images.npy` or `--onnx model.onnx --inputs images.npy`.

# %%
import os
import pathlib
import tempfile
import time

import numpy as np
import torch

import sparseconv as sc
import sparseconv.torch as st
from sparseconv.datasets import load_digits
from sparseconv.study import compare_model
from sparseconv.study.network import torch_model
from sparseconv.study.report import model_summary, write_model_outputs

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
torch.manual_seed(0)


model = torch_model()                                # the shipped digits CNN, trained weights, eval mode
print(model)
x_test, y_test = load_digits("test")                 # (1000, 1, 28, 28), labels
images = x_test[:200]                                # what compare runs the network on (no labels needed)

# %% [markdown]
# ## Every family on every layer, scored on the network
#
# `compare_model` finds the conv layers by running the network, then for
# each layer and each (family, budget) replaces that layer alone and
# records the layer's output error, the **network's** output error and
# top-1 agreement with the original network, the MAC reduction, and the
# kernel's measured speed against the dense layer. (`SPARSECONV_QUICK=1`,
# as in the test suite, tries at most two budgets per family.)

# %%
result = compare_model(model, images, quick=QUICK, progress=False)
for layer in result["layers"]:
    print(layer["name"], layer.get("geometry", layer.get("skipped")), f"{layer.get('macs', 0):,.0f} MACs")
print(model_summary(result, max_error=0.05))

# %% [markdown]
# ## Read the sensitivity figure
#
# One row per layer, one column per family: the colour is the lowest
# network output error among that family's points that cut the layer's MACs
# at least 2×; grey where the family has no such point. A dark row is a
# layer you can compress; a bright one is sensitive. This is the
# `network_error.png` that `sparseconv compare --torch/--onnx --out DIR`
# writes.

# %%
out = pathlib.Path(tempfile.mkdtemp())
written = write_model_outputs(result, out, max_error=0.05)
print("compare wrote:", ", ".join(p.name for p in written))
image = plt.imread(out / "network_error.png")          # (height, width, RGBA), drawn at its own size
fig = plt.figure(figsize=(image.shape[1] / 110, image.shape[0] / 110))
fig.add_axes((0, 0, 1, 1)).imshow(image)
fig.axes[0].axis("off")
plt.show()

# %% [markdown]
# The same records as a trade-off: each point one (family, budget) on one
# layer, its MAC reduction against the network error it causes. Points
# left of the dotted line change the network's output (its logits) by
# less than 5%.

# %%
scored = [r for r in result["records"] if "network_error" in r and "mac_reduction" in r]
layers = [layer["name"] for layer in result["layers"] if "skipped" not in layer]
families = list(dict.fromkeys(r["family"] for r in scored))
fig, axes = plt.subplots(1, len(layers), figsize=(4.5 * len(layers), 3.6), squeeze=False)
for ax, name in zip(axes[0], layers):
    for family in families:
        pts = [r for r in scored if r["layer"] == name and r["family"] == family]
        if pts:
            stl = sc.plot.family_style(family, families)
            ax.scatter([max(r["network_error"], 1e-5) for r in pts], [r["mac_reduction"] for r in pts],
                       color=stl["color"], marker=stl["marker"], s=22, label=family)
    ax.axvline(0.05, color="#999999", linestyle=":")
    ax.set(xscale="log", yscale="log", xlabel="network output error", ylabel="MAC reduction of the layer (x)",
           title=f"layer {name}")
axes[0][-1].legend(fontsize=6, ncol=2, loc="upper left")
fig.tight_layout()
plt.show()

# %% [markdown]
# ## Choose a family per layer
#
# A rule a user might take: for each layer, the point with the largest MAC
# reduction whose network error stays under 5% and whose top-1 agreement
# with the original network stays at 99% or more; keep the layer dense if
# none qualifies. (Other rules are as good: least storage, or the fastest
# measured kernel.)

# %%
def choose(records, max_error=0.05, min_agreement=0.99):
    chosen = {}
    for r in records:
        ok = r["network_error"] <= max_error and r.get("top1_agreement", 1.0) >= min_agreement
        if ok and r["mac_reduction"] > 1 and r["mac_reduction"] > chosen.get(r["layer"], {}).get("mac_reduction", 1):
            chosen[r["layer"]] = r
    return chosen


chosen = choose(scored)
for name in layers:
    r = chosen.get(name)
    print(f"layer {name}: " + (f"{r['family']} {r['label']} ({r['mac_reduction']:.1f}x fewer MACs, network error "
                               f"{r['network_error']:.4f})" if r else "stays dense"))

# %% [markdown]
# ## Apply it and measure
#
# `from_conv` turns each chosen point into the torch module of its family
# (same stride, padding and bias), built from the layer's trained weight
# with the parameters `compare` used. Then the three numbers that matter:
# test accuracy (with labels now), the network's MACs (`count_cost`), and
# the time of a forward pass.

# %%
compressed = torch_model()
for name, r in chosen.items():
    conv = compressed.get_submodule(name)
    compressed[int(name)] = st.from_conv(conv, r["family"], **r["params"])
compressed.eval()


def accuracy(m):
    with torch.no_grad():
        return (m(torch.from_numpy(x_test)).argmax(1) == torch.from_numpy(y_test)).float().mean().item()


def forward_ms(m, repeat=5 if QUICK else 20):
    xb = torch.from_numpy(x_test[:64])
    with torch.no_grad():
        m(xb)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            m(xb)
            times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


shape = (1, 1, 28, 28)
before, after = st.count_cost(model, shape), st.count_cost(compressed, shape)
acc_before, acc_after = accuracy(model), accuracy(compressed)
print(f"test accuracy {acc_before:.3f} -> {acc_after:.3f}")
print(f"MACs per image {before.macs:,.0f} -> {after.macs:,.0f} ({before.macs / after.macs:.2f}x fewer)")
print(f"stored parameters {before.params:,} -> {after.params:,}")
print(f"torch forward, 64 images: {forward_ms(model):.2f} ms -> {forward_ms(compressed):.2f} ms (this CPU)")
assert acc_after >= acc_before - 0.02    # the rule kept 99% top-1 agreement on the images compare saw
assert after.macs <= before.macs

# %% [markdown]
# The time above is torch's, running each family's module as torch ops
# (for example fake-quantized weights are dequantized and run as a float
# conv): a family that saves MACs need not save time in torch. The
# library's own kernels are what `compare` timed; for each chosen layer:

# %%
for name, r in chosen.items():
    print(f"layer {name} as {r['family']} {r['label']}: sparseconv kernel {1e3 * r['time_s']:.3f} ms against "
          f"the dense layer's {1e3 * r['dense_time_s']:.3f} ms ({r['speedup']:.2f}x), "
          f"{r['mac_reduction']:.1f}x fewer MACs")

# %% [markdown]
# ## Summary
#
# - `compare_model` (or `sparseconv compare --torch/--onnx`) scores every
#   family at every budget on every conv, each on the whole network.
# - The sensitivity figure shows which layers can be compressed and by what.
# - A per-layer rule picks one point each; `from_conv` applies it.
# - Measure what you get: accuracy, MACs, and time — in the runtime you
#   deploy with.
#
# ## Exercises
#
# 1. Tighten the rule to 2% network error: which layers stay dense, and
#    what is left of the MAC saving?
# 2. Fine-tune the compressed network for 30 steps on the training digits
#    (tutorial 8): how much accuracy comes back, and what does it cost in
#    MACs?
# 3. Choose by the largest measured speedup of the sparseconv kernel instead
#    of the largest MAC reduction: does the choice change?
#
# Solutions: [`solutions/s10_compress_your_own_network.py`](solutions/s10_compress_your_own_network.py)
# (the test suite runs them and checks their answers).
