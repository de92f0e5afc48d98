"""``compare_model``: the main job on a whole network, from an ONNX file or a torch module.

Every 2-D convolution with a constant weight is a layer under study. Its
real inputs are captured by running the network on the user's images (ONNX
Runtime, or a torch forward pre-hook), one layer at a time, so only one
layer's inputs are held at once. The families are swept on it as
:func:`sparseconv.study.compare.compare` sweeps one layer, under the
layer's own geometry, and each point is also scored on the network: the
point's ``to_weight()`` takes the place of that layer's weight (nothing
else changes), the network runs again on the same images and

    network_error  = ||f'(x) - f(x)||_F / ||f(x)||_F      (f: the first output)
    top1_agreement = mean over images of [argmax f'(x) = argmax f(x)]

the second when the first output is a class-score matrix (N, K). Neither
needs labels. An operator that also quantizes its inputs is not a weight
(``to_weight()`` would drop that), so its network scores are not measured
and its record says so in ``network_note``.
"""

import copy
import difflib
import fnmatch
import math
import pathlib
import time
from dataclasses import dataclass, field

import numpy as np

import sparseconv as sc

from .compare import _plan, _rel, _sweep_layer

__all__ = ["ConvLayer", "compare_model", "conv_layers", "replace_weight"]

#: images per forward pass of the network
BATCH = 16
#: seconds a point takes besides its network run (fit, timings), quick and full, for the estimate before a
#: sweep: what mobilenet_v2 took on this project's 2-core machines
POINT_SECONDS = {True: 0.15, False: 0.45}


@dataclass
class ConvLayer:
    """One convolution of a network, as :func:`compare_model` studies it.

    ``weight`` is (C_out, C_in/groups, kH, kW) float32; ``pads`` is (top,
    left, bottom, right) or, for an ONNX ``auto_pad``, that mode
    (``'SAME_UPPER'``, ``'SAME_LOWER'``), resolved on the input's size;
    ``skipped`` says why the layer cannot be studied (then ``weight`` may be
    None).
    """

    name: str
    weight: np.ndarray = field(default=None, repr=False)
    stride: tuple = (1, 1)
    dilation: tuple = (1, 1)
    groups: int = 1
    pads: object = (0, 0, 0, 0)
    skipped: str = None
    source: dict = field(default_factory=dict, repr=False)  # the backend's handle on the layer

    def explicit_pads(self, hw):
        """(top, left, bottom, right) on an input of spatial size ``hw``."""
        if not isinstance(self.pads, str):
            return tuple(int(p) for p in self.pads)
        out = []
        for n, k, s, d in zip(hw, self.weight.shape[2:], self.stride, self.dilation):
            total = max(0, (math.ceil(n / s) - 1) * s + d * (k - 1) + 1 - n)
            low = total - total // 2 if self.pads == "SAME_LOWER" else total // 2  # the odd pixel first or last
            out.append((low, total - low))
        return out[0][0], out[1][0], out[0][1], out[1][1]

    def describe(self):
        """``'C_out x C_in/G x kH x kW, stride S, pads (t, l, b, r), dilation D, groups G'``."""
        if self.weight is None:
            return ""
        return (f"{'x'.join(map(str, self.weight.shape))}, stride {_short(self.stride)}, pads {_short(self.pads)}, "
                f"dilation {_short(self.dilation)}, groups {self.groups}")


def _short(v):
    if isinstance(v, str):
        return v
    return str(v[0]) if len(set(v)) == 1 else ",".join(map(str, v))


def _onnx():
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ImportError("ONNX models need onnx and onnxruntime: pip install 'sparseconv[onnx]'") from exc
    return onnx, onnxruntime


class _Onnx:
    """An ONNX model run by ONNX Runtime on the CPU."""

    def __init__(self, model):
        onnx, self.ort = _onnx()
        self.onnx = onnx
        if isinstance(model, (str, pathlib.Path)):
            path = pathlib.Path(model)
            if not path.is_file():
                raise ValueError(f"model file {str(path)!r} does not exist")
            try:
                model = onnx.load(str(path))
            except Exception as exc:  # protobuf's DecodeError and friends
                raise ValueError(f"{path} is not an ONNX model: {exc}") from None
            self.description = path.name
        else:
            self.description = model.graph.name or "ONNX model"
        self.model = model
        graph = model.graph
        self.constants = {t.name: t for t in graph.initializer}
        for node in graph.node:
            if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
                self.constants[node.output[0]] = node.attribute[0].t
        inputs = [i for i in graph.input if i.name not in self.constants]
        if len(inputs) != 1:
            raise ValueError(f"the model has {len(inputs)} inputs {[i.name for i in inputs]}; compare feeds one "
                             f"(the images)")
        self.input_name = inputs[0].name
        if inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
            kind = onnx.TensorProto.DataType.Name(inputs[0].type.tensor_type.elem_type)
            raise ValueError(f"the model's input {self.input_name!r} is {kind}; compare runs float32 models")
        dims = inputs[0].type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in dims)
        self.output_name = graph.output[0].name
        self.backend = f"ONNX Runtime {self.ort.__version__}"

    def layers(self):
        numpy_helper = self.onnx.numpy_helper
        out = []
        for i, node in enumerate(self.model.graph.node):
            if node.op_type != "Conv" or node.domain not in ("", "ai.onnx"):
                continue
            name = node.name or node.output[0]
            attrs = {a.name: a for a in node.attribute}
            layer = ConvLayer(name, source=dict(index=i))
            if node.input[1] not in self.constants:
                layer.skipped = f"its weight {node.input[1]!r} is computed when the network runs, not a constant"
                out.append(layer)
                continue
            w = numpy_helper.to_array(self.constants[node.input[1]])
            if w.ndim != 4:
                layer.skipped = f"a {w.ndim - 2}-D convolution; compare takes 2-D ones"
                out.append(layer)
                continue
            if not np.all(np.isfinite(w)):
                raise ValueError(f"layer {name}: its weight has NaN or inf entries")
            layer.weight = np.ascontiguousarray(w, dtype=np.float32)
            layer.stride = tuple(attrs["strides"].ints) if "strides" in attrs else (1, 1)
            layer.dilation = tuple(attrs["dilations"].ints) if "dilations" in attrs else (1, 1)
            layer.groups = int(attrs["group"].i) if "group" in attrs else 1
            auto_pad = attrs["auto_pad"].s.decode() if "auto_pad" in attrs else "NOTSET"
            if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
                layer.pads = auto_pad
            elif auto_pad == "NOTSET" and "pads" in attrs:
                t, l, b, r = attrs["pads"].ints
                layer.pads = (t, l, b, r)
            out.append(layer)
        return out

    def _session(self, model):
        so = self.ort.SessionOptions()
        so.log_severity_level = 3
        # no spinning threads after a run: they would slow the kernels timed next
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            return self.ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ONNX Runtime's own error types
            raise ValueError(f"ONNX Runtime {self.ort.__version__} cannot load {self.description}: {exc}") from None

    def check_inputs(self, images):
        shape = self.input_shape
        if len(shape) != images.ndim or any(d is not None and d != n for d, n in zip(shape[1:], images.shape[1:])):
            want = "(" + ", ".join("N" if d is None else str(d) for d in shape) + ")"
            raise ValueError(f"inputs have shape {images.shape}; the model's input {self.input_name!r} takes {want}")

    def _run(self, session, images, name, feeds=None):
        parts = [session.run([name], {self.input_name: images[i:i + BATCH], **(feeds or {})})[0]
                 for i in range(0, len(images), BATCH)]
        return np.concatenate(parts)

    def outputs(self, images):
        try:
            return self._run(self._session(self.model), images, self.output_name)
        except Exception as exc:  # ONNX Runtime's own error types
            raise ValueError(f"ONNX Runtime cannot run the model on inputs of shape {images.shape}: {exc}") from None

    def capture(self, layers, images):
        """A function layer -> its inputs on ``images`` (N, C_in, H, W), from one session that exposes them all."""
        onnx = self.onnx
        model = copy.deepcopy(self.model)
        names = {self.model.graph.node[l.source["index"]].input[0] for l in layers}
        known = {o.name for o in model.graph.output}
        model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                                  for n in sorted(names - known))
        session = self._session(model)
        return lambda layer: self._run(session, images, self.model.graph.node[layer.source["index"]].input[0])

    def scorer(self, layer, images):
        """A function weight (C_out, C_in, kH, kW) -> the network's output with it in the layer."""
        model = replace_weight(self.model, layer.name, None)
        session = self._session(model)
        name = _weight_input_name(layer.name)
        return lambda weight: self._run(session, images, self.output_name, {name: weight})


def _weight_input_name(node_name):
    return f"{node_name}/sparseconv_weight"


def replace_weight(model, node, weight):
    """A copy of the ONNX ``model`` with Conv ``node``'s weight replaced by ``weight``.

    ``weight`` (C_out, C_in, kH, kW) is the dense weight (an operator's
    ``to_weight()``): a grouped node becomes an ungrouped one. With
    ``weight=None`` the weight becomes a graph input instead, named
    ``'<node>/sparseconv_weight'``, so one session can run many weights.
    """
    onnx, _ = _onnx()
    model = copy.deepcopy(model)
    graph = model.graph
    match = [n for n in graph.node if n.op_type == "Conv" and (n.name or n.output[0]) == node]
    if not match:
        raise ValueError(f"the model has no Conv node {node!r}")
    conv = match[0]
    old = conv.input[1]
    new = _weight_input_name(node)
    group = 1
    for a in conv.attribute:
        if a.name == "group":
            group, a.i = a.i, 1
    if weight is None:
        dims = next((list(t.dims) for t in graph.initializer if t.name == old), None)
        shape = None if dims is None else [dims[0], dims[1] * group, *dims[2:]]  # (C_out, C_in, kH, kW)
        graph.input.append(onnx.helper.make_tensor_value_info(new, onnx.TensorProto.FLOAT, shape))
    else:
        graph.initializer.append(onnx.numpy_helper.from_array(np.asarray(weight, dtype=np.float32), new))
    conv.input[1] = new
    if not any(old in n.input for n in graph.node):  # no other node shares it
        keep = [t for t in graph.initializer if t.name != old]
        del graph.initializer[:]
        graph.initializer.extend(keep)
    return model


class _Torch:
    """A torch ``nn.Module`` run in eval mode on the CPU, its convolutions reached by hooks."""

    def __init__(self, model):
        import torch

        if not isinstance(model, torch.nn.Module):
            raise TypeError(f"model must be an ONNX file or model, or a torch nn.Module, got {type(model).__name__}")
        self.torch, self.model = torch, model
        self.description = type(model).__name__
        self.backend = f"torch {torch.__version__}"

    def layers(self):
        out = []
        for name, m in self.model.named_modules():
            if not isinstance(m, self.torch.nn.Conv2d):
                continue
            layer = ConvLayer(name, source=dict(module=m))
            if m.padding_mode != "zeros":
                layer.skipped = f"it pads with {m.padding_mode!r}; only zero padding is supported"
                out.append(layer)
                continue
            w = m.weight.detach().cpu().float().numpy()
            if not np.all(np.isfinite(w)):
                raise ValueError(f"layer {name}: its weight has NaN or inf entries")
            layer.weight = np.ascontiguousarray(w)
            layer.stride, layer.dilation, layer.groups = tuple(m.stride), tuple(m.dilation), m.groups
            if m.padding == "same":
                layer.pads = "SAME_UPPER"  # torch puts the odd pixel at the end, as ONNX's SAME_UPPER
            elif m.padding == "valid":
                layer.pads = (0, 0, 0, 0)
            else:
                layer.pads = (m.padding[0], m.padding[1], m.padding[0], m.padding[1])
            out.append(layer)
        return out

    def check_inputs(self, images):
        pass  # a module says what it takes only by failing: the first forward pass checks

    def _run(self, images, hook=None, pre_hook=None, module=None):
        torch = self.torch
        handles = []
        if hook is not None:
            handles.append(module.register_forward_hook(hook))
        if pre_hook is not None:
            handles.append(module.register_forward_pre_hook(pre_hook))
        training = self.model.training
        self.model.eval()
        try:
            parts = []
            with torch.no_grad():
                for i in range(0, len(images), BATCH):
                    y = self.model(torch.from_numpy(images[i:i + BATCH]))
                    parts.append(_first_tensor(y).float().numpy())
            return np.concatenate(parts)
        finally:
            self.model.train(training)
            for h in handles:
                h.remove()

    def outputs(self, images):
        try:
            return self._run(images)
        except RuntimeError as exc:
            raise ValueError(f"the model cannot run on inputs of shape {images.shape}: {exc}") from None

    def capture(self, layers, images):
        def inputs_of(layer):
            seen = []
            self._run(images, pre_hook=lambda m, args: seen.append(args[0].float().numpy().copy()),
                      module=layer.source["module"])
            return np.concatenate(seen)
        return inputs_of

    def scorer(self, layer, images):
        F = self.torch.nn.functional

        def run(weight):
            w = self.torch.from_numpy(weight)

            def hook(m, args, out):
                return F.conv2d(args[0], w.to(args[0].dtype), m.bias, m.stride, m.padding, m.dilation, 1)
            return self._run(images, hook=hook, module=layer.source["module"])
        return run


def _first_tensor(y):
    """The network's first output: a tensor, or the first tensor of a tuple, list or dict."""
    while not hasattr(y, "numpy"):
        if isinstance(y, dict):
            y = next(iter(y.values()))
        elif isinstance(y, (tuple, list)) and y:
            y = y[0]
        else:
            raise ValueError(f"the model's output is a {type(y).__name__}, not a tensor")
    return y.detach().cpu()


def _backend(model):
    if isinstance(model, (str, pathlib.Path)):
        if pathlib.Path(model).suffix != ".onnx":
            raise ValueError(f"model must be an .onnx file (or an nn.Module), got {str(model)!r}")
        return _Onnx(model)
    if type(model).__module__.startswith("onnx"):
        return _Onnx(model)
    if not any(c.__module__.split(".")[0] == "torch" for c in type(model).__mro__):  # no torch import for others
        raise TypeError(f"model must be an ONNX file or model, or a torch nn.Module, got {type(model).__name__}")
    return _Torch(model)


def conv_layers(model):
    """The model's 2-D convolutions as :class:`ConvLayer` s, in graph order; those that cannot be studied have
    ``skipped``: the reason. ``model``: an ``.onnx`` path, an ``onnx.ModelProto`` or a torch ``nn.Module``."""
    return _backend(model).layers()


def _select(layers, patterns):
    """The layers whose names match one of the glob ``patterns``; a pattern matching none is a ValueError."""
    if patterns is None:
        return layers
    patterns = [patterns] if isinstance(patterns, str) else list(patterns)
    names = [l.name for l in layers]
    for p in patterns:
        if not fnmatch.filter(names, p):
            near = difflib.get_close_matches(p, names, n=5, cutoff=0.4)
            hint = f"; near matches: {near}" if near else f"; it has {names[:8]}{' ...' if len(names) > 8 else ''}"
            raise ValueError(f"no conv layer named {p!r}{hint}")
    return [l for l in layers if any(fnmatch.fnmatchcase(l.name, p) for p in patterns)]


def _network_scores(run, base, class_scores, linear):
    def score(op):
        if not isinstance(op, linear):
            return {"network_note": "quantizes its inputs too: to_weight() alone is not the layer, network scores "
                                    "not measured"}
        y = run(op.to_weight())
        out = {"network_error": _rel(y, base)}
        if class_scores:
            out["top1_agreement"] = float(np.mean(y.argmax(axis=1) == base.argmax(axis=1)))
        return out
    return score


def compare_model(model, inputs, layers=None, quick=False, families=None, progress=True, repeat=None,
                  max_minutes=30.0):
    """Every family at every budget on every conv layer of ``model``, scored on the layer and on the network.

    Parameters
    ----------
    model : str or pathlib.Path (``.onnx``), onnx.ModelProto or torch.nn.Module
        The network. ONNX models run with ONNX Runtime (``pip install
        'sparseconv[onnx]'``); torch modules in eval mode, on the CPU.
    inputs : array (N, ...)
        The network's inputs (images), float32; no labels.
    layers : str or list of str, optional
        Glob patterns of the layer names to study (ONNX node names, torch
        module paths); default all. A pattern that matches none is an error
        that lists near matches.
    quick : bool
        At most two budgets per family, fewer timing samples.
    families : list of str, optional
        Only these families.
    max_minutes : float
        Refuse (ValueError with the estimate) a sweep estimated to take longer.

    Returns
    -------
    dict with ``model``, ``backend``, ``inputs``, ``output_shape``,
    ``class_scores`` (whether top-1 agreement is scored), ``layers`` (one dict
    per conv: ``name``, ``geometry``, ``macs`` per image, ``dense_time_s``,
    or ``skipped``: why) and ``records``: :func:`compare`'s records with
    ``layer``, ``network_error`` and ``top1_agreement`` added.
    """
    from tqdm import tqdm

    net = _backend(model)
    images = np.asarray(inputs)
    if images.dtype.kind not in "fiu" or images.ndim < 2:
        raise ValueError(f"inputs must be a numeric array (N, ...), got {images.dtype} of shape {images.shape}")
    images = np.ascontiguousarray(images, dtype=np.float32)
    if not np.all(np.isfinite(images)):
        raise ValueError("inputs have NaN or inf entries")
    net.check_inputs(images)
    found = net.layers()
    if not found:
        raise ValueError(f"{net.description} has no Conv layers")
    chosen = _select(found, layers)
    todo = [l for l in chosen if l.skipped is None]
    if not todo:
        raise ValueError("no layer can be studied: " + "; ".join(f"{l.name}: {l.skipped}" for l in chosen))
    per_family = 2 if quick else None
    n_points = sum(len(_plan(l.weight.shape, l.groups, quick, families, per_family)[0]) for l in todo)
    start = time.perf_counter()
    base = net.outputs(images)
    t_net = time.perf_counter() - start
    if not np.all(np.isfinite(base)):
        raise ValueError("the network's output on these inputs has NaN or inf entries")
    class_scores = base.ndim == 2 and base.shape[1] > 1
    estimate = n_points * (t_net + POINT_SECONDS[bool(quick)]) / 60
    if estimate > max_minutes:
        raise ValueError(f"about {estimate:.0f} minutes for {n_points} points on {len(todo)} layers (more than "
                         f"max_minutes={max_minutes:g}); choose layers first (layers=/--layers PATTERN), use quick, "
                         f"or raise max_minutes")
    capture = net.capture(todo, images)
    layer_rows, records = [], []
    for layer in tqdm(chosen, desc="layers", disable=not progress):
        row = {"name": layer.name, "geometry": layer.describe()}
        if layer.skipped is not None:
            layer_rows.append({**row, "skipped": layer.skipped})
            continue
        x = capture(layer)  # (N, C_in, H, W): what this layer sees on the images
        t, l, b, r = layer.explicit_pads(x.shape[2:])
        if (t, l) != (b, r):  # sparseconv pads symmetrically: pad the inputs here, then no padding
            x = np.pad(x, ((0, 0), (0, 0), (t, b), (l, r)))
            t = l = 0
        geom = dict(stride=layer.stride, padding=(t, l), dilation=layer.dilation)
        score = _network_scores(net.scorer(layer, images), base, class_scores, sc.WeightOperator)
        try:
            recs = _sweep_layer(layer.weight, np.ascontiguousarray(x), f"captured on {len(images)} inputs", geom,
                                layer.groups, quick=quick, families=families, repeat=repeat, progress=progress,
                                network=score, per_family=per_family, desc=layer.name)
        except ValueError as exc:
            layer_rows.append({**row, "skipped": str(exc)})
            continue
        macs = sc.conv_cost(layer.weight, (1,) + x.shape[1:], groups=layer.groups, **geom).macs
        scored = [r for r in recs if "skipped" not in r]
        row.update(macs=float(macs), dense_time_s=float(np.median([r["dense_time_s"] for r in scored]))
                   if scored else None)
        layer_rows.append(row)
        records += [{"layer": layer.name, **r} for r in recs]
    return {"model": net.description, "backend": net.backend, "inputs": list(images.shape),
            "output_shape": list(base.shape), "class_scores": class_scores, "network_time_s": t_net,
            "layers": layer_rows, "records": records}

