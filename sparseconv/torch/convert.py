"""Between sparseconv operators, torch modules and torch convolutions: from_operator, to_operator,
from_conv, compress."""

import torch.nn as nn

import sparseconv as sc

from . import modules as M

__all__ = ["METHODS", "compress", "from_conv", "from_operator", "to_operator"]


def __getattr__(name):
    if name == "METHODS":  # the registry's families, read when asked, so that families registered later appear
        return sc.registry.names()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_operator(op, stride=1, padding=0, dilation=1, bias=None):
    """A trainable ``nn.Module`` whose output equals ``sparseconv.conv2d(x, op, bias, stride, padding, dilation)``.

    The module class is the one the operator's class names (``torch_module``,
    :mod:`sparseconv.registry`); an operator that names none runs as its
    dense weight. The module lives on the CPU in the operator's dtype; move
    it with ``.to(device)`` as any module.
    """
    if not isinstance(op, (sc.WeightOperator, sc.NonlinearWeight)):
        raise TypeError(f"op must be a sparseconv WeightOperator or NonlinearWeight, got {type(op).__name__}")
    return M.module_for(op, stride, padding, dilation, bias)


def to_operator(module):
    """The sparseconv operator a module computes (without its bias): the inverse of :func:`from_operator`.

    Accepts the modules of :mod:`sparseconv.torch.modules` and ``nn.Conv2d``
    (a :class:`sparseconv.DenseWeight`, or :class:`sparseconv.BlockDiagonalWeight`
    when grouped).
    """
    if isinstance(module, nn.Conv2d):
        w = module.weight.detach().cpu().numpy()
        return sc.DenseWeight(w) if module.groups == 1 else sc.BlockDiagonalWeight(w, module.groups)
    if hasattr(module, "to_operator"):
        return module.to_operator()
    raise TypeError(f"no sparseconv operator for a {type(module).__name__}")


def _dense_weight(conv):
    """The conv's weight as a dense (C_out, C_in, kH, kW) array: a grouped conv is block-diagonal."""
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
    method : str, a registered family (:data:`METHODS`, :func:`sparseconv.registry.names`)
        ``"binary"`` -> :func:`sparseconv.binarize`, ``"quantize"`` ->
        :func:`sparseconv.quantize`, ``"kmeans"`` ->
        :func:`sparseconv.kmeans_quantize`, the others the function of that
        name; ``"block_diagonal"`` defaults to the conv's own groups.
    **kwargs : passed to that function

    Returns
    -------
    nn.Module with the conv's stride, padding, dilation and bias.
    """
    if not isinstance(conv, nn.Conv2d):
        raise TypeError(f"conv must be an nn.Conv2d, got {type(conv).__name__}")
    if conv.padding_mode != "zeros":
        raise ValueError(f"only zero padding is supported, got padding_mode={conv.padding_mode!r}")
    if method not in sc.registry.names():
        raise ValueError(f"method must be one of {list(sc.registry.names())}, got {method!r}")
    weight = _dense_weight(conv)
    if method == "block_diagonal":
        kwargs.setdefault("groups", conv.groups)
    op = sc.registry.family(method).build(weight, **kwargs)
    padding = conv.padding if isinstance(conv.padding, str) else tuple(conv.padding)
    bias = None if conv.bias is None else conv.bias.detach().cpu()
    return from_operator(op, tuple(conv.stride), padding, tuple(conv.dilation), bias).to(conv.weight.device)


def compress(model, method, filter=None, errors="raise", **kwargs):
    """Replace every ``nn.Conv2d`` of ``model`` (in place) by :func:`from_conv` with ``method``.

    Parameters
    ----------
    model : nn.Module
    method : str, a registered family (:data:`METHODS`)
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
