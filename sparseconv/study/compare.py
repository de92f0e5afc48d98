"""``compare``: every family, over a range of budgets, on one real layer.

For each (family, budget) point the record holds what it stores
(``num_params``, ``bytes``), what it costs per image (``macs``, ``bitops``,
``equivalent_flops``), how far it is from the layer (``weight_error`` =
||W - op||_F / ||W||_F; ``output_error`` = ||conv(X, op) - conv(X, W)|| /
||conv(X, W)|| on real inputs X), what the network does with it in place of
the layer (``accuracy``, no retraining; ``accuracy_finetuned`` after a short
fine-tune of that layer alone, when asked), and how fast its kernel runs
(``time_s`` against ``dense_time_s`` of the dense conv2d on the same inputs,
in the same run: ``speedup``; ``mac_reduction`` is the dense MACs over its,
counting bitops as 1/64 of a FLOP; ``storage_reduction`` the dense float32
bytes over its bytes).
Families are named as ``sparseconv.torch.from_conv``'s methods.
"""

import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

import sparseconv as sc

__all__ = ["FAMILIES", "compare", "load_layer", "pareto", "sweep"]

def __getattr__(name):
    if name == "FAMILIES":  # the registry's, read when asked, so that families registered later appear
        return sc.registry.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def sweep(kernel_shape, quick=False):
    """The (family, label, parameters) points for a layer of ``kernel_shape``, cheapest budget last per family.

    Each registered family's own ``sweep`` (:mod:`sparseconv.registry`) says
    which budgets it tries; points the layer cannot take (IGCV1 and IGCV2
    need C_in = C_out, groups must divide) are left out by the family.
    """
    return [(f.name, label, params) for f in sc.registry.families() for label, params in f.points(kernel_shape, quick)]


def _median_time(fn, repeat):
    fn()  # warm up (numba compiles on first call)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def _rel(a, b):
    return float(np.linalg.norm(a - b) / (np.linalg.norm(b) or 1.0))


def _layer_weight(w, name):
    """A layer's weight as float32 (C_out, C_in, kH, kW), 4-D and finite, or a ValueError naming ``name``."""
    try:
        w = sc.as_operator(w).to_weight()
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from None
    if not np.all(np.isfinite(w)):
        raise ValueError(f"{name} has NaN or inf entries")
    return np.ascontiguousarray(w, dtype=np.float32)


def load_layer(spec):
    """A user's layer: ``file.npy``, ``file.npz[:key]`` or ``model.pt:module.path`` (a torch model file).

    Returns the weight (C_out, C_in, kH, kW) as float32, validated (4-D,
    finite) before anything is written. Loading a whole torch model unpickles
    it: only do that with files you trust.
    """
    import pathlib

    path, _, key = str(spec).partition(":") if not str(spec).endswith(".npy") else (str(spec), "", "")
    p = pathlib.Path(path)
    if not p.is_file():
        raise ValueError(f"weights file {path!r} does not exist")
    if p.suffix == ".npy":
        w = np.load(p, allow_pickle=False)
    elif p.suffix == ".npz":
        with np.load(p, allow_pickle=False) as f:
            names = f.files
            if not key:
                if len(names) != 1:
                    raise ValueError(f"{path} holds {names}; name one as {path}:KEY")
                key = names[0]
            if key not in names:
                raise ValueError(f"{path} has no array {key!r}; it holds {names}")
            w = f[key]
    elif p.suffix in (".pt", ".pth"):
        import torch

        model = torch.load(p, map_location="cpu", weights_only=False)
        if not key:
            raise ValueError(f"name the conv module as {path}:module.path")
        module = model.get_submodule(key)
        if not isinstance(module, torch.nn.Conv2d):
            raise ValueError(f"{key} in {path} is a {type(module).__name__}, not an nn.Conv2d")
        w = module.weight.detach().numpy()
        if module.groups > 1:
            w = sc.BlockDiagonalWeight(w, module.groups).to_weight()
    else:
        raise ValueError(f"weights must be a .npy, .npz or .pt file, got {path!r}")
    return _layer_weight(w, "weights")


def compare(weight=None, inputs=None, quick=False, finetune=False, families=None, progress=True, repeat=None):
    """Run the sweep on ``weight`` (default: the shipped network's conv2) and return one record per point.

    Parameters
    ----------
    weight : array (C_out, C_in, kH, kW), optional
        A user's layer; accuracy needs the default network, so it is only
        reported for the default layer.
    inputs : array (N, C_in, H, W), optional
        Inputs of the layer for the output error and the timings. Default:
        the layer inputs of real test digits (default layer), else standard
        normal samples of 14 x 14 (documented in each record's ``inputs``).
    quick : bool
        Fewer budgets, fewer images, fewer ALS sweeps (CI).
    finetune : bool
        Also fine-tune the replaced layer (torch, default layer only).
    families : list of str, optional
        Only these families.

    Returns
    -------
    list of dict, one per (family, budget), every number finite.
    """
    from tqdm import tqdm

    from .network import accuracy, layer_input, load_network

    net = None
    if weight is None:
        from ..datasets import load_digits

        net = load_network()
        weight = net["conv2.weight"]
        x_test, y_test = load_digits("test")
        if quick:
            x_test, y_test = x_test[::4], y_test[::4]
        inputs_name = f"layer inputs of {len(x_test)} test digits"
        if inputs is None:
            inputs = layer_input(net, x_test)  # (N, 64, 14, 14): what conv2 sees on the test digits
    else:
        weight = _layer_weight(weight, "weight")
        inputs_name = "given inputs"
        if inputs is None:
            inputs = np.random.default_rng(0).standard_normal((8 if quick else 32, weight.shape[1], 14, 14),
                                                              dtype=np.float32)
            inputs_name = "standard normal inputs, 14 x 14"
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    if inputs.ndim != 4 or inputs.shape[1] != weight.shape[1]:
        raise ValueError(f"inputs must be (N, C_in={weight.shape[1]}, H, W), got {inputs.shape}")
    if families is not None:
        unknown = sorted(set(families) - set(sc.registry.names()))
        if unknown:
            raise ValueError(f"unknown families {unknown}; choose from {list(sc.registry.names())}")
    points = [p for p in sweep(weight.shape, quick) if families is None or p[0] in families]
    repeat = repeat or (3 if quick else 5)
    timing_x = inputs[:16 if quick else 64]
    dense = sc.DenseWeight(weight)
    per_image = (1,) + inputs.shape[1:]
    dense_macs = sc.conv_cost(dense, per_image, padding=1).macs
    records = []
    # NumPy's BLAS (the fits, the linear layer) single-threaded: a multi-threaded OpenBLAS leaves its threads
    # spinning after each call, and they would slow the numba kernels timed next (15x seen here).
    with threadpool_limits(limits=1, user_api="blas"):
        reference = sc.conv2d(inputs, dense, padding=1)
        dense_time = _median_time(lambda: sc.conv2d(timing_x, dense, padding=1), repeat)
        base_accuracy = accuracy(net, x_test, y_test) if net is not None else None
        for family, label, params in tqdm(points, desc="compare", disable=not progress):
            records.append(_point(family, label, params, weight, inputs, inputs_name, reference, timing_x, dense_time,
                                  dense_macs, per_image, repeat, net, x_test if net is not None else None,
                                  y_test if net is not None else None, base_accuracy, finetune, quick))
    return records


def _point(family, label, params, weight, inputs, inputs_name, reference, timing_x, dense_time, dense_macs,
           per_image, repeat, net, x_test, y_test, base_accuracy, finetune, quick):
    """One record of :func:`compare`."""
    from .network import accuracy

    op = sc.registry.family(family).build(weight, **params)
    cost = sc.conv_cost(op, per_image, padding=1)
    t = _median_time(lambda: sc.conv2d(timing_x, op, padding=1), repeat)
    rec = {"family": family, "label": label,
           "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()},
           "num_params": int(op.num_params), "bytes": int(op.nbytes), "macs": float(cost.macs),
           "bitops": int(cost.bitops), "equivalent_flops": float(cost.equivalent_flops),
           "mac_reduction": float(dense_macs / max(cost.macs + cost.bitops / 128, 1e-9)),
           "storage_reduction": float(weight.size * weight.itemsize / op.nbytes),
           "weight_error": float(sc.relative_error(op, weight)),
           "output_error": _rel(sc.conv2d(inputs, op, padding=1), reference),
           "time_s": t, "dense_time_s": dense_time, "speedup": dense_time / t, "inputs": inputs_name}
    if net is not None:
        rec["accuracy"] = accuracy(net, x_test, y_test, layer=op)
        rec["dense_accuracy"] = base_accuracy
        if finetune:
            rec["accuracy_finetuned"] = _finetune(net, op, quick)
    return rec


def _finetune(net, op, quick):
    """Accuracy after training the replaced layer alone (the rest frozen) for a short while, with torch."""
    import torch

    import sparseconv.torch as st

    from ..datasets import load_digits
    from .network import _torch_net

    torch.manual_seed(0)
    model = _torch_net(torch)
    layers = {"conv1": model[0], "conv2": model[3], "fc": model[7]}
    with torch.no_grad():
        for name, m in layers.items():
            m.weight.copy_(torch.from_numpy(net[f"{name}.weight"]))
            m.bias.copy_(torch.from_numpy(net[f"{name}.bias"]))
    model[3] = st.from_operator(op, padding=1, bias=torch.from_numpy(net["conv2.bias"]))
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for p in model[3].parameters() if p.dtype.is_floating_point]
    for p in trainable:
        p.requires_grad_(True)
    x, y = load_digits("train")
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    if trainable:
        opt = torch.optim.Adam(trainable, lr=1e-3)
        gen = torch.Generator().manual_seed(0)
        for _ in range(1):
            order = torch.randperm(len(xt), generator=gen)[:1000 if quick else len(xt)]
            for i in range(0, len(order), 64):
                idx = order[i:i + 64]
                opt.zero_grad()
                torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
                opt.step()
    xs, ys = load_digits("test")
    with torch.no_grad():
        return float((model(torch.from_numpy(xs)).argmax(1).numpy() == ys).mean())


def pareto(records, key="macs", error="output_error"):
    """Per family, the points not beaten on both ``key`` (lower) and ``error`` (lower), sorted by ``key``."""
    out = {}
    for family in dict.fromkeys(r["family"] for r in records):
        pts = sorted((r for r in records if r["family"] == family), key=lambda r: (r[key], r[error]))
        front, best = [], math.inf
        for r in pts:
            if r[error] < best:
                front.append(r)
                best = r[error]
        out[family] = front
    return out
