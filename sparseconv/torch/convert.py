"""Between sparseconv operators, torch modules and torch convolutions: from_operator, to_operator,
from_conv, compress."""

import torch
import torch.nn as nn

from . import modules as M

__all__ = ["METHODS", "compress", "from_conv", "from_operator", "to_operator"]

#: what ``from_conv`` and ``compress`` accept, and the sparseconv function each calls
METHODS = ("binary", "quantize", "kmeans", "low_rank", "spatial_low_rank", "prune", "block_diagonal", "igcv1",
           "igcv2", "igcv3")


def from_operator(op, stride=1, padding=0, dilation=1, bias=None):
    """A trainable ``nn.Module`` whose output equals ``sparseconv.conv2d(x, op, bias, stride, padding, dilation)``.

    The module lives on the CPU in the operator's dtype; move it with
    ``.to(device)`` as any module.
    """
    import sparseconv as sc

    if not isinstance(op, sc.WeightOperator):
        raise TypeError(f"op must be a sparseconv WeightOperator, got {type(op).__name__}")
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    if isinstance(op, sc.IGCV1):
        m = M.IGCV1Conv2d.from_operator(op, **kwargs)
    elif isinstance(op, sc.IGCV2):
        m = M.IGCV2Conv2d.from_operator(op, **kwargs)
    elif isinstance(op, sc.Permutation) and op.kernel_shape[2:] == (1, 1) and stride == 1 and padding == 0:
        m = M.ChannelPermute(op)
    else:
        cls = {sc.ProductWeight: M.ProductConv2d, sc.DenseWeight: M.DenseConv2d,
               sc.BlockDiagonalWeight: M.BlockDiagonalConv2d, sc.LowRankWeight: M.LowRankConv2d,
               sc.SpatialLowRankWeight: M.SpatialLowRankConv2d, sc.ChannelReducedWeight: M.ChannelReducedConv2d,
               sc.SparseWeight: M.SparseConv2d, sc.BinaryWeight: M.BinaryConv2d, sc.QuantizedWeight: M.QuantConv2d,
               sc.CodebookWeight: M.CodebookConv2d}
        match = next((c for t, c in cls.items() if isinstance(op, t)), None)
        if match is None:  # any other operator: its dense weight
            return M.DenseConv2d(sc.DenseWeight(op.to_weight()), bias=bias, **kwargs)
        return match(op, bias=bias, **kwargs)
    if bias is not None:
        return _WithBias(m, bias)
    return m


class _WithBias(nn.Module):
    def __init__(self, inner, bias):
        super().__init__()
        self.inner = inner
        self.bias = nn.Parameter(torch.as_tensor(bias).clone())

    def forward(self, x):
        return self.inner(x) + self.bias.view(1, -1, 1, 1)

    def to_operator(self):
        return to_operator(self.inner)


def to_operator(module):
    """The sparseconv operator a module computes (without its bias): the inverse of :func:`from_operator`.

    Accepts the modules of :mod:`sparseconv.torch.modules` and ``nn.Conv2d``
    (a :class:`sparseconv.DenseWeight`, or :class:`sparseconv.BlockDiagonalWeight`
    when grouped).
    """
    import sparseconv as sc

    if isinstance(module, nn.Conv2d):
        w = module.weight.detach().cpu().numpy()
        return sc.DenseWeight(w) if module.groups == 1 else sc.BlockDiagonalWeight(w, module.groups)
    if hasattr(module, "to_operator"):
        return module.to_operator()
    raise TypeError(f"no sparseconv operator for a {type(module).__name__}")


def _dense_weight(conv):
    """The conv's weight as a dense (C_out, C_in, kH, kW) array: a grouped conv is block-diagonal."""
    import sparseconv as sc

    w = conv.weight.detach().cpu().numpy()
    if conv.groups == 1:
        return w
    return sc.BlockDiagonalWeight(w, conv.groups).to_weight()


def from_conv(conv, method, **kwargs):
    """Compress an ``nn.Conv2d`` with a sparseconv family; return the module that runs it.

    Parameters
    ----------
    conv : nn.Conv2d (any groups, depthwise included: its dense weight is
        block-diagonal; zero padding only)
    method : one of :data:`METHODS`
        ``"binary"`` -> :func:`sparseconv.binarize`, ``"quantize"`` ->
        :func:`sparseconv.quantize`, ``"kmeans"`` ->
        :func:`sparseconv.kmeans_quantize`, the others the function of that
        name; ``"block_diagonal"`` defaults to the conv's own groups.
    **kwargs : passed to that function

    Returns
    -------
    nn.Module with the conv's stride, padding, dilation and bias.
    """
    import sparseconv as sc

    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"only zero padding is supported, got padding_mode={conv.padding_mode!r}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}")
    weight = _dense_weight(conv)
    fn = {"binary": sc.binarize, "quantize": sc.quantize, "kmeans": sc.kmeans_quantize, "low_rank": sc.low_rank,
          "spatial_low_rank": sc.spatial_low_rank, "prune": sc.prune, "block_diagonal": sc.block_diagonal,
          "igcv1": sc.igcv1, "igcv2": sc.igcv2, "igcv3": sc.igcv3}[method]
    if method == "block_diagonal":
        kwargs.setdefault("groups", conv.groups)
    op = fn(weight, **kwargs)
    padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    bias = None if conv.bias is None else conv.bias.detach().cpu()
    return from_operator(op, tuple(conv.stride), padding, tuple(conv.dilation), bias).to(conv.weight.device)


def compress(model, method, filter=None, errors="raise", **kwargs):
    """Replace every ``nn.Conv2d`` of ``model`` (in place) by :func:`from_conv` with ``method``.

    Parameters
    ----------
    model : nn.Module
    method : one of :data:`METHODS`
    filter : callable (name, conv) -> bool, optional
        Only the convs it accepts are replaced.
    errors : "raise" or "skip"
        What to do when the method cannot take a conv (e.g. IGCV1 on a
        non-square one): raise its error, or leave the conv and report why.
    **kwargs : passed to the method

    Returns
    -------
    list of dict
        One row per conv seen: ``name``, ``replaced``, ``params_before``,
        ``params_after``, ``relative_error`` (of the new weight against the
        old, ||W - op||_F / ||W||_F) or ``reason`` when skipped.
    """
    import sparseconv as sc

    if errors not in ("raise", "skip"):
        raise ValueError(f"errors must be 'raise' or 'skip', got {errors!r}")
    targets = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    report = []
    for name, conv in targets:
        if filter is not None and not filter(name, conv):
            continue
        row = {"name": name, "replaced": False, "params_before": sum(p.numel() for p in conv.parameters())}
        try:
            new = from_conv(conv, method, **kwargs)
        except ValueError as exc:
            if errors == "raise":
                raise ValueError(f"{name}: {exc}") from exc
            row["reason"] = str(exc)
            report.append(row)
            continue
        op = to_operator(new)
        row.update(replaced=True, params_after=int(op.num_params) + (0 if conv.bias is None else conv.bias.numel()),
                   relative_error=float(sc.relative_error(op, _dense_weight(conv))))
        parent, _, attr = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, attr, new)
        report.append(row)
    return report
