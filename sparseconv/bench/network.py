"""``sparseconv bench conv --network NAME``: every distinct conv layer of a real network, and its total.

The network (``mobilenet_v2``, ``resnet18`` or ``igcv3_d`` from
:mod:`sparseconv.torch.models`, at 224 x 224) is run once through torch with
a hook on every ``nn.Conv2d`` to collect its layers' geometry: C_in, C_out,
kernel, stride, padding, dilation, groups and input size. Layers of the
same geometry are timed once and counted as often as they occur. For each
distinct layer and batch size, side by side in one run (see :mod:`.harness`),
on random float32 data:

- ``sparseconv``: :func:`sparseconv.conv2d` with the layer's geometry (NCHW);
- ``torch``: ``torch.nn.functional.conv2d`` (NCHW);
- ``onnxruntime``: the layer as a one-node ONNX model (when installed).

Each is checked first against torch's float64 conv (an independent oracle).
The network's conv time is the sum over its layers of (count x median).

``small`` is no network but a set of layers that take torch well under
0.1 ms, where per-call overhead (validation, planning, waking threads)
weighs most: a 96 -> 24 3x3 conv on 6 x 12, 8 -> 8 3x3 on 8 x 8, 16 -> 16
1x1 on 8 x 8, 64 -> 384 1x1 on 14 x 14 and a 32-channel depthwise 3x3 on
14 x 14, each counted once.
"""

import numpy as np

import sparseconv

from .conv import _ort_contender
from .harness import Contender, environment, run

__all__ = ["NETWORKS", "bench_network", "network_layers", "network_table"]

NETWORKS = ("mobilenet_v2", "resnet18", "igcv3_d", "small")

#: (C_in, C_out, k, padding, groups, H, W) of the ``small`` set (stride 1)
_SMALL = [(96, 24, 3, 1, 1, 6, 12), (8, 8, 3, 1, 1, 8, 8), (16, 16, 1, 0, 1, 8, 8), (64, 384, 1, 0, 1, 14, 14),
          (32, 32, 3, 1, 32, 14, 14)]


def network_layers(name, size=224):
    """The distinct conv layers of network ``name`` as dicts (geometry, input shape at batch 1, ``count``)."""
    import torch

    from ..torch import models

    if name not in NETWORKS:
        raise ValueError(f"name must be one of {list(NETWORKS)}, got {name!r}")
    if name == "small":
        return [{"C_in": c_in, "C_out": c_out, "k": k, "stride": 1, "padding": pad, "dilation": 1, "groups": g,
                 "H": h, "W": w, "count": 1} for c_in, c_out, k, pad, g, h, w in _SMALL]
    model = getattr(models, name)().eval()
    found = {}

    def hook(module, inputs):
        x = inputs[0]
        key = (module.in_channels, module.out_channels, module.kernel_size, module.stride, module.padding,
               module.dilation, module.groups, tuple(x.shape[2:]))
        found[key] = found.get(key, 0) + 1

    handles = [m.register_forward_pre_hook(hook) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    finally:
        for h in handles:
            h.remove()
    layers = []
    for (c_in, c_out, k, stride, pad, dil, groups, hw), count in found.items():
        if len(set(k)) != 1 or len(set(stride)) != 1 or len(set(pad)) != 1 or len(set(dil)) != 1:
            raise ValueError(f"{name}: a non-square conv layer {k, stride, pad, dil} (not in these networks)")
        layers.append({"C_in": c_in, "C_out": c_out, "k": k[0], "stride": stride[0], "padding": pad[0],
                       "dilation": dil[0], "groups": groups, "H": hw[0], "W": hw[1], "count": count})
    return layers


def _label(layer):
    g = layer["groups"]
    kind = "dw" if g == layer["C_in"] == layer["C_out"] and g > 1 else f"g{g}" if g > 1 else ""
    return (f"{layer['C_in']}->{layer['C_out']} {layer['k']}x{layer['k']}/{layer['stride']} {kind} "
            f"{layer['H']}x{layer['W']}").replace("  ", " ")


def bench_network(name, quick=False, batches=None, repeat=None, progress=print):
    """Time every distinct conv layer of network ``name``; return the environment and one record per layer."""
    import torch
    import torch.nn.functional as F

    batches = batches or ((1,) if quick else (1, 8))
    repeat = repeat or (3 if quick else 7)
    rng = np.random.default_rng(0)
    records = []
    for layer in network_layers(name):
        geometry = dict(stride=layer["stride"], padding=layer["padding"], dilation=layer["dilation"],
                        groups=layer["groups"])
        shape = (layer["C_out"], layer["C_in"] // layer["groups"], layer["k"], layer["k"])
        w = (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(np.prod(shape[1:]))).astype(np.float32)
        for n in batches:
            x = rng.standard_normal((n, layer["C_in"], layer["H"], layer["W"]), dtype=np.float32)
            xt, wt = torch.from_numpy(x), torch.from_numpy(w)
            ref = F.conv2d(xt.double(), wt.double(), **geometry).numpy()  # the oracle: torch in float64
            contenders = [Contender("sparseconv", lambda x=x: sparseconv.conv2d(x, w, **geometry), "numba"),
                          Contender("torch", lambda xt=xt: F.conv2d(xt, wt, **geometry).numpy(), "torch")]
            contenders += _ort_contender(x, w, **geometry)
            results = run(contenders, ref, repeat=repeat, min_sample_s=0.02 if quick else 0.05)
            rec = {"network": name, "layer": _label(layer), **layer, "N": n,
                   "contenders": {r.name: r.as_dict() for r in results}}
            records.append(rec)
            progress(f"{name} {rec['layer']} x{layer['count']} N={n}: " + ", ".join(
                f"{r.name} {r.median_s * 1e3:.3f} ms" if r.ok else f"{r.name} WRONG (error {r.error:.2g})"
                for r in results))
    return {"environment": environment(), "network": name, "records": records}


def _median(rec, name):
    c = rec["contenders"].get(name)
    return c["median_s"] if c and c["ok"] else float("nan")


def network_table(result):
    """(headers, rows, totals): per layer and batch the medians and ratios; totals per batch: the network's
    conv time per contender, count-weighted."""
    headers = ["layer", "count", "N", "sparseconv ms", "torch ms", "ORT ms", "ratio torch", "ratio ORT"]
    rows, totals = [], {}
    for rec in result["records"]:
        sc, t, o = (_median(rec, k) for k in ("sparseconv", "torch", "onnxruntime"))
        rows.append([rec["layer"], rec["count"], rec["N"], f"{sc * 1e3:.3f}", f"{t * 1e3:.3f}", f"{o * 1e3:.3f}",
                     f"{sc / t:.2f}", f"{sc / o:.2f}"])
        tot = totals.setdefault(rec["N"], {"sparseconv": 0.0, "torch": 0.0, "onnxruntime": 0.0})
        for k, v in (("sparseconv", sc), ("torch", t), ("onnxruntime", o)):
            tot[k] += rec["count"] * v
    return headers, rows, totals
