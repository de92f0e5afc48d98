# %% [markdown]
# # 8. Training with torch, on a GPU when there is one
#
# The NumPy/numba core is for learning and measuring on a CPU; networks are
# trained with torch. `sparseconv.torch` carries the same factorizations as
# torch modules that run wherever their input lives. Everything below runs on
# the CPU here and unchanged on CUDA: only `device` changes.

# %%
import os

import numpy as np
import torch

import sparseconv as sc
import sparseconv.torch as st
from sparseconv.datasets import load_digits
from sparseconv.study.network import torch_model

plt = sc.plot.use_style()
QUICK = os.environ.get("SPARSECONV_QUICK") == "1"
device = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
print("device:", device)

# %% [markdown]
# ## Modules and functions
#
# `IGCV1Conv2d` is the primary group conv, the shuffle, the secondary group
# conv and the shuffle back; its operator is the core's `IGCV1`, and both
# compute the same thing.

# %%
layer = st.IGCV1Conv2d(64, L=4, M=16).to(device)
x = torch.randn(2, 64, 14, 14, device=device)
y = layer(x)
core = sc.conv2d(x.cpu().numpy(), layer.to_operator(), padding=1)
assert np.allclose(y.detach().cpu().numpy(), core, atol=1e-4)
print(f"IGCV1Conv2d on {y.device}: {sum(p.numel() for p in layer.parameters()):,} parameters")

# %% [markdown]
# ## Compressing a trained model: from_conv and compress
#
# The digits network of the earlier tutorials, rebuilt in torch with its
# trained weights. `compress` replaces its convolutions by any family and
# reports what changed; every replacement is a trainable module.

# %%
def digits_model():
    """The shipped network's layers and trained weights as a torch module (``torch_model``), on ``device``."""
    return torch_model().to(device)


print(digits_model())
xs, ys = load_digits("test")
xt, yt = torch.from_numpy(xs).to(device), torch.from_numpy(ys).to(device)

def accuracy(model):
    with torch.no_grad():
        return (model(xt).argmax(1) == yt).float().mean().item()

model = digits_model()
print(f"trained network: {accuracy(model):.3f}")
report = st.compress(model, "igcv1", filter=lambda name, conv: conv.in_channels == 64, L=4, M=16,
                     max_iter=10 if QUICK else 40)
print(report)
print(f"conv2 as IGCV1 (4, 16), no retraining: {accuracy(model):.3f}")

# %% [markdown]
# A short fine-tune of the replaced layer alone (everything else frozen)
# recovers much of the loss: gradients flow through the factors.

# %%
x_train, y_train = (torch.from_numpy(a).to(device) for a in load_digits("train"))
for p in model.parameters():
    p.requires_grad_(False)
for p in model[3].parameters():
    p.requires_grad_(True)
opt = torch.optim.Adam(model[3].parameters(), lr=1e-3)
steps = 20 if QUICK else 200
losses, curve = [], [(0, accuracy(model))]
for step in range(1, steps + 1):
    model.train()
    idx = torch.randint(0, len(x_train), (64,), device=device)
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx])
    loss.backward()
    opt.step()
    losses.append(loss.item())
    if step % (steps // 10) == 0:
        model.eval()
        curve.append((step, accuracy(model)))
model.eval()
print(f"after {steps} steps of fine-tuning: {accuracy(model):.3f}")
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3))
ax1.plot(np.arange(1, steps + 1), losses, color=sc.plot.PALETTE[2], alpha=0.5, label="batch loss")
window = max(1, steps // 20)
ax1.plot(np.arange(window, steps + 1), np.convolve(losses, np.ones(window) / window, mode="valid"),
         color=sc.plot.PALETTE[5], label=f"mean of {window}")
ax1.set(xlabel="step", ylabel="cross-entropy", title="fine-tuning conv2 as IGCV1 (4, 16)")
ax1.legend()
ax2.plot(*zip(*curve), marker="o", color=sc.plot.PALETTE[6])
ax2.axhline(accuracy(digits_model()), color="#999999", linestyle=":", label="the dense network")
ax2.set(xlabel="step", ylabel="test accuracy", title="on the 1,000 test digits")
ax2.legend()
fig.tight_layout()
plt.show()

# %% [markdown]
# ## A short equal-budget training run
#
# `sparseconv study` trains networks whose two middle layers are regular
# convs, IGCV1, IGCV2, IGCV3, separable or low-rank convolutions, each at the
# width that matches a parameter budget. Here its quick mode (one budget, one
# seed, half the data) for 6 epochs; `figures/params_vs_error.png` is the full run.

# %%
from sparseconv.study.budget import equal_budget, study_table

designs = ["regular", "igcv1 L=4", "igcv3", "depthwise-separable"]
result = equal_budget(quick=True, designs=designs[:2] if QUICK else designs, epochs=1 if QUICK else 6,
                      progress=False)
print(study_table(result))
assert all(abs(r["budget_gap"]) <= 0.05 for r in result["rows"])
fig, ax = plt.subplots(figsize=(5, 3))
ax.barh([r["design"] for r in result["rows"]], [100 * r["error_mean"] for r in result["rows"]],
        color=[sc.plot.family_style(r["design"], designs)["color"] for r in result["rows"]])
ax.set(xlabel="test error (%)", title=f"{result['rows'][0]['budget']:,} parameters, quick run")
plt.show()

# %% [markdown]
# ## Summary
#
# - Every operator has a torch module; `from_conv` / `compress` convert a
#   trained model; `to_operator` goes back to the core.
# - The same code runs on CUDA: tensors and modules only need `.to(device)`.
# - In this short run the designs are matched in parameters (gaps printed);
#   one seed on half the data says little about which is better — the full
#   study (3 seeds, 3 budgets) does.
#
# ## Exercises
#
# 1. Compress conv2 with `"quantize", bits=4` and with `"prune", amount=0.9`
#    instead: which loses less before fine-tuning, which after?
# 2. Run `st.count_cost` on the compressed model: where did the MACs go?
# 3. On a machine with a GPU, time `st.IGCV1Conv2d` against `nn.Conv2d` with
#    `sparseconv bench torch`.
#
# Solutions: [`solutions/s08_training_on_gpu_with_torch.py`](solutions/s08_training_on_gpu_with_torch.py)
# (the test suite runs them and checks their answers).
