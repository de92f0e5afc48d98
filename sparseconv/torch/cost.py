"""count_cost: parameters, MACs, bitops and bytes moved of a torch model, layer by layer.

Conventions (those of :mod:`sparseconv.cost`):

- a MAC is one multiply-add; MACs = FLOPs / 2. Convolutions count
  C_out * (C_in / groups) * kH * kW per output position (group-aware);
  sparseconv's modules count what their operator's ``cost`` counts (stored
  nonzeros only for pruned weights, k multiplications per output for
  codebooks, ...), through ``to_operator()``; linear layers in * out per
  sample. Batch norm, activations and pooling count no MACs (as in the
  published totals: MobileNetV2 300 M, ResNet-18 1.8 G at 224 x 224).
- ``bitops``: binary multiply-accumulates (XNOR + popcount layers).
- ``bytes_moved``: the weights as stored, the layer's input and output
  tensors, and the copies that channel permutations make (each reads and
  writes the tensor once).
"""

from dataclasses import dataclass, field

import torch
import torch.nn as nn

from .._table import format_table

__all__ = ["CostTable", "count_cost"]


@dataclass
class CostTable:
    """Rows (one per leaf layer that ran, in order) and their totals."""

    rows: list = field(default_factory=list)

    @property
    def params(self):
        return sum(r["params"] for r in self.rows)

    @property
    def macs(self):
        return sum(r["macs"] for r in self.rows)

    @property
    def bitops(self):
        return sum(r["bitops"] for r in self.rows)

    @property
    def bytes_moved(self):
        return sum(r["bytes_moved"] for r in self.rows)

    def __str__(self):
        headers = ["layer", "type", "output", "params", "MACs", "bitops", "bytes moved"]
        cells = [headers] + [[r["name"], r["type"], "x".join(map(str, r["output"])), f"{r['params']:,}",
                              f"{r['macs']:,.0f}", f"{r['bitops']:,}", f"{r['bytes_moved']:,}"] for r in self.rows]
        cells.append(["total", "", "", f"{self.params:,}", f"{self.macs:,.0f}", f"{self.bitops:,}",
                      f"{self.bytes_moved:,}"])
        lines = format_table(cells[0], cells[1:]).split("\n")
        lines.insert(len(lines) - 1, lines[1])  # a rule above the totals too
        return "\n".join(lines)


def _operator_cost(module, x_shape):
    """What conv2d with the module's operator runs on an input of x_shape, under the module's geometry."""
    from .convert import to_operator

    op = to_operator(module)
    inner = getattr(module, "inner", module)  # a module wrapped with a bias
    geom = {k: getattr(inner, k) for k in ("stride", "padding", "dilation") if hasattr(inner, k)}
    geom = {k: (v if isinstance(v, (int, str)) else tuple(v)) for k, v in geom.items()}
    return op.conv_cost(x_shape, **geom), op


def _row(name, module, inputs, output):
    x = inputs[0] if inputs else None
    isz = output.element_size()
    act_bytes = (x.numel() * x.element_size() if isinstance(x, torch.Tensor) else 0) + output.numel() * isz
    own = [p for p in module.parameters(recurse=False)]
    params = sum(p.numel() for p in own)
    macs, bitops, extra = 0.0, 0, 0
    inner = getattr(module, "inner", module)  # a module wrapped with a bias is shown and priced as itself
    weight_bytes = sum(p.numel() * p.element_size() for p in own)
    if isinstance(module, (nn.Conv2d,)) or hasattr(module, "to_operator"):
        cost, op = _operator_cost(module, tuple(x.shape))
        macs, bitops = cost.macs, cost.bitops
        from .. import Permutation, ProductWeight

        if not isinstance(module, nn.Conv2d):
            params = int(op.num_params) + (0 if getattr(module, "bias", None) is None else module.bias.numel())
            weight_bytes = int(op.nbytes)
        factors = op.factors if isinstance(op, ProductWeight) else []
        extra = sum(2 * output.numel() * isz for f in factors if isinstance(f, Permutation))
        if isinstance(op, ProductWeight) and hasattr(inner, "L"):  # IGCV1Conv2d: two shuffles in torch
            extra = 2 * 2 * output.numel() * isz
    elif isinstance(module, nn.Linear):
        macs = float(module.in_features * module.out_features * (output.numel() // module.out_features))
    kind = type(inner).__name__ + (" + bias" if inner is not module else "")
    return {"name": name, "type": kind, "output": tuple(output.shape), "params": int(params),
            "macs": macs, "bitops": int(bitops), "bytes_moved": int(weight_bytes + act_bytes + extra)}


def _is_leaf(module):
    """A layer counted as one row: sparseconv's operator modules whole, else modules without children."""
    from .modules import IGCV3Block

    if isinstance(module, IGCV3Block):  # its convs and BNs are counted one by one
        return False
    return hasattr(module, "to_operator") or not any(True for _ in module.children())


def count_cost(model, input_size, dtype=None, device=None):
    """Run one forward pass on zeros of ``input_size`` (N, C, H, W) and count every leaf layer.

    The input is made in ``dtype`` on ``device`` (default: those of the
    model's first parameter).

    Returns
    -------
    CostTable
        ``rows`` (name, type, output shape, params, macs, bitops,
        bytes_moved) and the totals ``params``, ``macs``, ``bitops``,
        ``bytes_moved``; ``print(table)`` shows it. Parameters of layers that
        did not run are not counted.
    """
    from .modules import IGCV3Block

    first = next(model.parameters(), None)
    device = device or (first.device if first is not None else torch.device("cpu"))
    dtype = dtype or (first.dtype if first is not None else torch.float32)
    table = CostTable()
    handles = []
    counted = set()
    for name, module in model.named_modules():
        inside = any(name.startswith(c + ".") for c in counted)
        if inside:
            continue
        if isinstance(module, IGCV3Block):
            def shuffle_hook(m, inputs, output, name=name):  # the channel shuffle between expand and depthwise
                e = m.expand.out_channels
                n, _, h, w = inputs[0].shape
                table.rows.append({"name": f"{name}.shuffle", "type": "channel_shuffle", "output": (n, e, h, w),
                                   "params": 0, "macs": 0.0, "bitops": 0,
                                   "bytes_moved": 2 * n * e * h * w * output.element_size()})
            handles.append(module.register_forward_hook(shuffle_hook))
        elif _is_leaf(module):
            if any(True for _ in module.children()):
                counted.add(name)  # its children are part of its row
            handles.append(module.register_forward_hook(
                lambda m, i, o, name=name: table.rows.append(_row(name or type(m).__name__, m, i, o))))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(input_size, dtype=dtype, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return table
