"""``compare``: every family, over a range of budgets, on one real layer.

For each (family, budget) point the record holds what it stores
(``num_params``, ``bytes``), what it costs per image (``macs``, ``bitops``,
``equivalent_flops``), how far it is from the layer (``weight_error`` =
||W - op||_F / ||W||_F; ``output_error`` = ||conv(X, op) - conv(X, W)|| /
||conv(X, W)|| on real inputs X), what the network does with it in place of
the layer (``accuracy``, no retraining; ``accuracy_finetuned`` after a short
fine-tune of that layer alone, when asked), and how fast its kernel runs
(``time_s`` against ``dense_time_s`` of the dense conv2d on the same inputs,
timed in turn with it: ``speedup``; ``mac_reduction`` is the dense MACs over its,
counting bitops as 1/64 of a FLOP; ``storage_reduction`` the dense float32
bytes over its bytes).
Families are named as ``sparseconv.torch.from_conv``'s methods.
"""

import math
import time

import numpy as np
from threadpoolctl import threadpool_limits

import sparseconv as sc

__all__ = ["FAMILIES", "compare", "load_layer", "load_model", "pareto", "scored", "sweep"]

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


def _median_times(fn, ref, repeat):
    """Medians of ``repeat`` timings of ``fn`` and of ``ref``, taken in turn so that both see the same machine
    (a shared machine's speed drifts between runs); each is called once first (numba compiles on first call)."""
    fn()
    ref()
    samples = []
    for _ in range(repeat):
        pair = []
        for f in (fn, ref):
            start = time.perf_counter()
            f()
            pair.append(time.perf_counter() - start)
        samples.append(pair)
    t, t_ref = np.median(np.array(samples), axis=0)
    return float(t), float(t_ref)


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


def load_layer(spec, geometry=False):
    """A user's layer: ``file.npy``, ``file.npz[:key]`` or ``model.pt:module.path`` (a torch model file).

    Returns the weight (C_out, C_in, kH, kW) as float32, validated (4-D,
    finite) before anything is written; a grouped torch conv as its dense
    block-diagonal weight. With ``geometry=True``: ``(weight, geometry)``,
    the weight as stored (C_out, C_in/groups, kH, kW) and the dict of
    :func:`compare`'s stride, padding, dilation and groups (a torch conv's
    own; empty for arrays, whose geometry the caller gives). Loading a whole
    torch model unpickles it: only do that with files you trust.
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

        if not key:
            raise ValueError(f"name the conv module as {path}:module.path")
        model = load_model(p)
        try:
            module = model.get_submodule(key)
        except AttributeError:
            names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Conv2d)]
            raise ValueError(f"{path} has no module {key!r}; its convs: {names[:8]}"
                             f"{' ...' if len(names) > 8 else ''}") from None
        if not isinstance(module, torch.nn.Conv2d):
            raise ValueError(f"{key} in {path} is a {type(module).__name__}, not an nn.Conv2d")
        if module.padding_mode != "zeros":
            raise ValueError(f"{key} in {path} pads with {module.padding_mode!r}; only zero padding is supported")
        w = module.weight.detach().numpy()
        if geometry:
            padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
            return _layer_weight(w, "weights"), dict(stride=tuple(module.stride), padding=padding,
                                                     dilation=tuple(module.dilation), groups=module.groups)
        if module.groups > 1:
            w = sc.BlockDiagonalWeight(w, module.groups).to_weight()
    else:
        raise ValueError(f"weights must be a .npy, .npz or .pt file, got {path!r}")
    return (_layer_weight(w, "weights"), {}) if geometry else _layer_weight(w, "weights")


def load_model(path):
    """A whole torch model saved with ``torch.save(model)``: this unpickles it, which runs code from the file,
    so only load files you trust. A ValueError when the file holds no ``nn.Module``."""
    try:
        import torch
    except ImportError as exc:
        raise ImportError("torch models need torch: pip install 'sparseconv[torch]'") from exc
    model = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"{path} holds a {type(model).__name__}, not a whole model (torch.save(model), not its "
                         f"state_dict)")
    return model


def compare(weight=None, inputs=None, quick=False, finetune=False, families=None, progress=True, repeat=None,
            stride=1, padding=None, dilation=1, groups=1):
    """Run the sweep on ``weight`` (default: the shipped network's conv2) and return one record per point.

    Parameters
    ----------
    weight : array (C_out, C_in/groups, kH, kW), optional
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
    stride, padding, dilation, groups
        The layer's geometry, as in :func:`sparseconv.conv2d`; every MAC
        count, output and timing is computed under it. ``padding=None``:
        dilation * (k - 1) // 2 on each side ('same' for odd kernels at
        stride 1, 0 for 1x1). A grouped layer is compressed as its dense
        block-diagonal matrix and compared with the grouped layer itself.
        The default layer has its own (stride 1, padding 1, groups 1).

    Returns
    -------
    list of dict, one per (family, budget), every number finite; a point the
    layer cannot take (or that would cost more than the grouped layer it
    replaces) is a record with ``skipped``: the reason, and no numbers.
    """
    from .network import layer_input, load_network

    net = x_test = y_test = None
    if weight is None:
        from ..datasets import load_digits

        if (stride, padding, dilation, groups) not in ((1, None, 1, 1), (1, 1, 1, 1)):
            raise ValueError("the default layer has its own geometry (stride 1, padding 1); give a weight to set one")
        padding = 1
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
            c_in = weight.shape[1] * (groups if isinstance(groups, int) and not isinstance(groups, bool) else 1)
            inputs = np.random.default_rng(0).standard_normal((8 if quick else 32, c_in, 14, 14), dtype=np.float32)
            inputs_name = "standard normal inputs, 14 x 14"
    if padding is None:
        dh, dw = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        padding = (dh * (weight.shape[2] - 1) // 2, dw * (weight.shape[3] - 1) // 2)
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    if inputs.ndim != 4:
        raise ValueError(f"inputs must be 4-D (N, C_in, H, W), got shape {inputs.shape}")
    if not np.all(np.isfinite(inputs)):
        raise ValueError("inputs have NaN or inf entries")
    geom = dict(stride=stride, padding=padding, dilation=dilation)
    return _sweep_layer(weight, inputs, inputs_name, geom, groups, quick=quick, families=families, repeat=repeat,
                        progress=progress, net=net, x_test=x_test, y_test=y_test, finetune=finetune)


def _plan(weight_shape, groups, quick, families=None, per_family=None):
    """The (family, label, params) points :func:`_sweep_layer` scores on a layer of ``weight_shape``
    (C_out, C_in/groups, kH, kW), and the skip records of the families it cannot take."""
    if families is not None:
        unknown = sorted(set(families) - set(sc.registry.names()))
        if unknown:
            raise ValueError(f"unknown families {unknown}; choose from {list(sc.registry.names())}")
    c_out, c_in, kh, kw = weight_shape
    full = (c_out, c_in * groups, kh, kw)
    chosen = {f: f.points(full, quick) for f in sc.registry.families() if families is None or f.name in families}
    if per_family is not None:
        chosen = {f: pts if len(pts) <= per_family else pts[:per_family - 1] + pts[-1:] for f, pts in chosen.items()}
    skipped = [_skipped(f.name, "", {}, f.cannot(full, quick)) for f, pts in chosen.items() if not pts]
    if groups != 1 and c_in == 1:  # depthwise
        dense = [f for f, pts in chosen.items() if pts and not f.keeps_zeros]
        skipped += [_skipped(f.name, "", {}, f"a depthwise layer: its operators would run the {full[0]} x "
                                             f"{full[1] * kh * kw} block-diagonal matrix densely, {full[1]}x the "
                                             f"layer's MACs") for f in dense]
        chosen = {f: pts for f, pts in chosen.items() if f not in dense}
    return [(f.name, label, params) for f, pts in chosen.items() for label, params in pts], skipped


def _sweep_layer(weight, inputs, inputs_name, geom, groups, quick, families=None, repeat=None, progress=True,
                 net=None, x_test=None, y_test=None, finetune=False, network=None, per_family=None, desc="compare"):
    """:func:`compare`'s records for a validated layer: ``weight`` (C_out, C_in/groups, kH, kW) float32 and
    finite, ``inputs`` (N, C_in, H, W) likewise, ``geom`` its stride, padding and dilation.

    ``network(op)``, when given, returns more fields for each scored point
    (the network-level scores of :func:`sparseconv.study.model.compare_model`);
    ``per_family`` keeps at most that many points of each family (its first
    and its cheapest).
    """
    from tqdm import tqdm

    from .network import accuracy

    per_image = (1,) + inputs.shape[1:]
    dense_macs = sc.conv_cost(weight, per_image, groups=groups, **geom).macs  # checks the geometry against inputs
    full = sc.BlockDiagonalWeight(weight, groups).to_weight() if groups != 1 else weight  # (C_out, C_in, kH, kW)
    points, skipped = _plan(weight.shape, groups, quick, families, per_family)
    layer = dict(weight=full, layer_bytes=weight.nbytes, inputs=inputs, inputs_name=inputs_name, geom=geom,
                 per_image=per_image, dense_macs=dense_macs, grouped=groups != 1, repeat=repeat or (3 if quick else 5),
                 timing_x=inputs[:16 if quick else 64], net=net, x_test=x_test, y_test=y_test, finetune=finetune,
                 quick=quick, network=network)
    records = []
    # NumPy's BLAS (the fits, the linear layer) single-threaded: a multi-threaded OpenBLAS leaves its threads
    # spinning after each call, and they would slow the numba kernels timed next (15x seen here).
    with threadpool_limits(limits=1, user_api="blas"):
        layer["reference"] = sc.conv2d(inputs, weight, groups=groups, **geom)
        layer["dense"] = lambda: sc.conv2d(layer["timing_x"], weight, groups=groups, **geom)
        layer["base_accuracy"] = accuracy(net, x_test, y_test) if net is not None else None
        for family, label, params in tqdm(points, desc=desc, disable=not progress, leave=network is None):
            records.append(_point(family, label, params, layer))
    return records + skipped


def _skipped(family, label, params, reason):
    return {"family": family, "label": label, "params": _plain(params), "skipped": reason}


def _plain(params):
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in params.items()}


def _point(family, label, params, layer):
    """One record of :func:`compare`: the point scored under the layer's geometry, or why it is skipped."""
    from .network import accuracy

    try:
        op = sc.registry.family(family).build(layer["weight"], **params)
    except ValueError as exc:  # the family cannot take this layer at this budget
        return _skipped(family, label, params, str(exc))
    geom, per_image = layer["geom"], layer["per_image"]
    cost = sc.conv_cost(op, per_image, **geom)
    macs = cost.macs + cost.bitops / 128
    if layer["grouped"] and macs > layer["dense_macs"]:
        return _skipped(family, label, params, f"costs {macs:,.0f} MACs per image, more than the grouped layer's "
                                               f"{layer['dense_macs']:,.0f}: no saving")
    t, t_dense = _median_times(lambda: sc.conv2d(layer["timing_x"], op, **geom), layer["dense"], layer["repeat"])
    rec = {"family": family, "label": label, "params": _plain(params),
           "num_params": int(op.num_params), "bytes": int(op.nbytes), "macs": float(cost.macs),
           "bitops": int(cost.bitops), "equivalent_flops": float(cost.equivalent_flops),
           "mac_reduction": float(layer["dense_macs"] / max(macs, 1e-9)),
           "storage_reduction": float(layer["layer_bytes"] / op.nbytes),
           "weight_error": float(sc.relative_error(op, layer["weight"])),
           "output_error": _rel(sc.conv2d(layer["inputs"], op, **geom), layer["reference"]),
           "time_s": t, "dense_time_s": t_dense, "speedup": t_dense / t,
           "inputs": layer["inputs_name"]}
    net = layer["net"]
    if net is not None:
        rec["accuracy"] = accuracy(net, layer["x_test"], layer["y_test"], layer=op)
        rec["dense_accuracy"] = layer["base_accuracy"]
        if layer["finetune"]:
            rec["accuracy_finetuned"] = _finetune(net, op, layer["quick"])
    if layer["network"] is not None:
        rec.update(layer["network"](op))
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


def scored(records):
    """The records that were scored (not ``skipped``)."""
    return [r for r in records if "skipped" not in r]


def pareto(records, key="macs", error="output_error"):
    """Per family, the points not beaten on both ``key`` (lower) and ``error`` (lower), sorted by ``key``."""
    records = scored(records)
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
