"""The default layer: a small CNN for the embedded digits, whose second convolution is the layer under study.

Layout (N images of 1 x 28 x 28):

    conv1 1 -> 64, 3x3, padding 1, bias; ReLU; 2x2 max pool   -> (N, 64, 14, 14)
    conv2 64 -> 64, 3x3, padding 1, bias; ReLU; 2x2 max pool  -> (N, 64, 7, 7)    <- the layer under study
    flatten; linear 3136 -> 10, bias                            -> logits

Inference runs in NumPy with :func:`sparseconv.conv2d`, so ``sparseconv
compare`` needs no torch; :func:`train_default` (torch) made the shipped
weights, ``default_net.npz`` next to this file, with
``sparseconv train-default`` (seed 0, the settings below).
"""

import pathlib

import numpy as np

from .. import conv2d

__all__ = ["SHAPES", "WEIGHTS", "accuracy", "forward", "layer_input", "load_network", "torch_model", "train_default"]

WEIGHTS = pathlib.Path(__file__).resolve().parent / "default_net.npz"
SHAPES = {"conv1.weight": (64, 1, 3, 3), "conv1.bias": (64,), "conv2.weight": (64, 64, 3, 3), "conv2.bias": (64,),
          "fc.weight": (10, 64 * 7 * 7), "fc.bias": (10,)}
#: how the shipped weights were trained (``sparseconv train-default`` uses these)
TRAINING = dict(seed=0, epochs=15, batch_size=64, lr=3e-3)


def load_network(path=None):
    """The network's arrays (float32), from ``path`` or the shipped file, loaded with ``allow_pickle=False``."""
    path = WEIGHTS if path is None else pathlib.Path(path)
    with np.load(path, allow_pickle=False) as f:
        net = {k: np.asarray(f[k], dtype=np.float32) for k in f.files}
    for key, shape in SHAPES.items():
        if key not in net or net[key].shape != shape:
            raise ValueError(f"{path}: {key} must have shape {shape}, got "
                             f"{net[key].shape if key in net else 'nothing'}")
    return net


def _pool(y):
    """2x2 max pool, stride 2: the largest of the four strided views, (N, C, H/2, W/2)."""
    return np.maximum(np.maximum(y[:, :, 0::2, 0::2], y[:, :, 0::2, 1::2]),
                      np.maximum(y[:, :, 1::2, 0::2], y[:, :, 1::2, 1::2]))


def layer_input(net, x):
    """What the layer under study sees: relu(conv1(x)), pooled, (N, 64, 14, 14)."""
    return _pool(np.maximum(conv2d(x, net["conv1.weight"], net["conv1.bias"], padding=1), 0))


def forward(net, x, layer=None):
    """Logits (N, 10); ``layer`` (a WeightOperator or a weight array) replaces conv2's weight, its bias kept."""
    h = layer_input(net, x)
    y = conv2d(h, net["conv2.weight"] if layer is None else layer, net["conv2.bias"], padding=1)
    h = _pool(np.maximum(y, 0))  # (N, 64, 7, 7)
    return h.reshape(len(h), -1) @ net["fc.weight"].T + net["fc.bias"]  # (N, 10)


def accuracy(net, x, y, layer=None, batch=500):
    """Fraction of ``x`` classified as ``y``."""
    hits = 0
    for i in range(0, len(x), batch):
        hits += int(np.sum(forward(net, x[i:i + batch], layer).argmax(axis=1) == y[i:i + batch]))
    return hits / len(x)


def _torch_net(torch):
    nn = torch.nn
    return nn.Sequential(nn.Conv2d(1, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 10))


def torch_model(net=None):
    """The network as a ``torch.nn.Sequential`` in eval mode, with the shipped weights (or ``net``'s arrays).

    Its modules are numbered as printed: 0 conv1, 3 conv2 (the layer under
    study), 7 the linear classifier; ``model(x)`` on (N, 1, 28, 28) float32
    gives the logits :func:`forward` gives.
    """
    import torch

    net = load_network() if net is None else net
    model = _torch_net(torch)
    with torch.no_grad():
        for i, name in ((0, "conv1"), (3, "conv2"), (7, "fc")):
            model[i].weight.copy_(torch.from_numpy(net[f"{name}.weight"]))
            model[i].bias.copy_(torch.from_numpy(net[f"{name}.bias"]))
    return model.eval()


def train_default(out=None, seed=TRAINING["seed"], epochs=TRAINING["epochs"], batch_size=TRAINING["batch_size"],
                  lr=TRAINING["lr"], progress=True):
    """Train the default network on the 4,000 training digits with torch (CPU); write it to ``out``.

    Adam with a one-cycle learning-rate schedule, cross-entropy, random
    shifts of up to 2 pixels, one seed for the initialisation, the batch
    order and the shifts. Returns the test accuracy
    (computed by the NumPy forward pass, as ``compare`` does).
    """
    import torch
    from tqdm import tqdm

    from ..datasets import load_digits

    torch.manual_seed(seed)
    x, y = load_digits("train")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    model = _torch_net(torch)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    per_epoch = -(-len(xt) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * per_epoch)
    gen = torch.Generator().manual_seed(seed)
    padded = torch.nn.functional.pad(xt, (2, 2, 2, 2))  # (N, 1, 32, 32): room for shifts of up to 2 pixels
    steps = tqdm(range(epochs), desc="train-default", disable=not progress)
    for _ in steps:
        order = torch.randperm(len(xt), generator=gen)
        shifts = torch.randint(0, 5, (len(xt), 2), generator=gen)
        model.train()
        for i in range(0, len(order), batch_size):
            idx = order[i:i + batch_size]
            batch = torch.stack([padded[j, :, dy:dy + 28, dx:dx + 28] for j, (dy, dx) in zip(idx.tolist(),
                                                                                             shifts[idx].tolist())])
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(batch), yt[idx])
            loss.backward()
            opt.step()
            schedule.step()
        steps.set_postfix(loss=f"{loss.item():.3f}")
    names = ["conv1", None, None, "conv2", None, None, None, "fc"]
    net = {}
    for name, module in zip(names, model):
        if name is not None:
            net[f"{name}.weight"] = module.weight.detach().numpy().astype(np.float32)
            net[f"{name}.bias"] = module.bias.detach().numpy().astype(np.float32)
    if out is not None:
        np.savez(out, **net)
    xs, ys = load_digits("test")
    return accuracy(net, xs, ys)
