"""The cost model every comparison in sparseconv uses.

Conventions (docs/cost-model.md states them too):

- A MAC is one multiply-add; FLOPs = mults + adds, so a dense layer's FLOPs
  are 2 x its MACs. ``macs`` is defined as FLOPs / 2 for every operator, the
  number of dense multiply-adds the same arithmetic amounts to.
- Zeros that are not stored cost nothing.
- Binary multiply-accumulates (XNOR + popcount on bits) are ``bitops``; where
  one number is needed they join the FLOPs as ``flops + bitops / 64``
  (the XNOR-Net / Bi-Real Net convention): :attr:`Cost.equivalent_flops`.
- ``bytes_moved`` counts the weights as stored, the input columns and the
  outputs, each at its true bit width.
"""

from dataclasses import dataclass, fields

import numpy as np

from ._validation import as_array, geometry, positive_int
from .operator import _Weight

__all__ = ["Cost", "conv_cost", "dense_cost"]


@dataclass(frozen=True)
class Cost:
    """Arithmetic and memory traffic of one operator applied to some columns.

    Attributes
    ----------
    mults, adds : int
        Floating-point (or integer) multiplications and additions.
    bitops : int
        Binary multiply-accumulates done on packed bits.
    bytes_moved : int
        Bytes of weights, input columns and outputs read or written.
    """

    mults: int = 0
    adds: int = 0
    bitops: int = 0
    bytes_moved: int = 0

    @property
    def flops(self):
        """mults + adds."""
        return self.mults + self.adds

    @property
    def macs(self):
        """FLOPs / 2: multiply-adds in dense-layer units."""
        return self.flops / 2

    @property
    def equivalent_flops(self):
        """flops + bitops / 64, one number for layers that mix float and binary work."""
        return self.flops + self.bitops / 64

    def __add__(self, other):
        if not isinstance(other, Cost):
            return NotImplemented
        return Cost(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(self)))

    def __mul__(self, k):
        if not isinstance(k, (int, np.integer)):
            return NotImplemented
        return Cost(*(getattr(self, f.name) * int(k) for f in fields(self)))

    __rmul__ = __mul__


def dense_cost(c_out, k, k_total, n_cols, itemsize):
    """Cost of a dense (possibly grouped) product on ``n_cols`` columns.

    Each of the ``c_out`` outputs per column is a dot product of length
    ``k`` (C_in/groups*kH*kW): ``k`` multiplications and ``k`` additions
    (the first one adds to the zero accumulator, so that FLOPs = 2*MACs).
    The columns hold ``k_total`` = C_in*kH*kW entries each.
    """
    macs = int(c_out) * int(k) * int(n_cols)
    moved = (int(c_out) * int(k) + int(k_total) * int(n_cols) + int(c_out) * int(n_cols)) * int(itemsize)
    return Cost(mults=macs, adds=macs, bytes_moved=moved)


def conv_cost(op_or_weight, x_shape, stride=1, padding=0, dilation=1, groups=None):
    """Cost of convolving an input of ``x_shape`` with an operator or a 4-D weight.

    Parameters
    ----------
    op_or_weight : WeightOperator or array, shape (C_out, C_in/groups, kH, kW)
    x_shape : tuple (N, C_in, H, W)
    stride, padding, dilation
        As in :func:`sparseconv.conv2d`.
    groups : int, optional
        For a 4-D weight; inferred as C_in / weight.shape[1] when omitted.

    Returns
    -------
    Cost
        What the convolution runs: ``op.conv_cost(x_shape, stride, padding,
        dilation)``; for most operators their ``cost(n_cols)`` with
        ``n_cols = N * H_out * W_out``, and for operators with parts at
        different resolutions each part at its own.
    """
    if isinstance(op_or_weight, _Weight):
        if groups not in (None, 1):
            raise ValueError(
                f"groups applies to 4-D weights only (an operator has its own structure), got groups={groups!r}"
            )
        return op_or_weight.conv_cost(x_shape, stride, padding, dilation)
    if not (isinstance(x_shape, (tuple, list)) and len(x_shape) == 4):
        raise ValueError(f"x_shape must be a 4-tuple (N, C_in, H, W), got {x_shape!r}")
    w = as_array(op_or_weight, "weight")
    if w.ndim != 4:
        raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {w.shape}")
    if groups is None:
        groups = x_shape[1] // w.shape[1] if w.shape[1] else 1
    groups = positive_int(groups, "groups")
    if w.shape[1] * groups != x_shape[1] or w.shape[0] % groups:
        raise ValueError(f"weight of shape {w.shape} with groups={groups} does not fit x_shape {tuple(x_shape)}")
    g = geometry(x_shape, w.shape[2:], stride, padding, dilation)
    n_cols = int(x_shape[0]) * g.h_out * g.w_out
    kk = g.kh * g.kw
    return dense_cost(w.shape[0], w.shape[1] * kk, x_shape[1] * kk, n_cols, w.dtype.itemsize)
