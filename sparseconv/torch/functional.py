"""Functions on torch tensors: convolutions with sparseconv's conventions, IGC, any operator, STEs.

Device-agnostic: every tensor made here is made on the device (and in the
dtype) of the input. Like torch's and sparseconv's, "convolution" here is
cross-correlation.
"""

import numpy as np
import torch
import torch.nn.functional as F

from .._validation import geometry

__all__ = ["binary_input_conv2d", "channel_shuffle", "conv2d", "fake_quantize", "igc_conv2d", "operator_conv2d",
           "quantize_input", "sign_ste"]


def _geometry(x, kernel_size, stride, padding, dilation):
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C_in, H, W), got shape {tuple(x.shape)}")
    return geometry(tuple(x.shape), kernel_size, stride, padding, dilation)


def _pad(x, g):
    if g.top or g.bottom or g.left or g.right:
        return F.pad(x, (g.left, g.right, g.top, g.bottom))
    return x


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """``torch.nn.functional.conv2d`` with sparseconv's padding rules.

    Padding is made explicit (``'same'`` with an even kernel puts the extra
    row and column at the bottom and right, as torch does), so the result
    equals :func:`sparseconv.conv2d` for every argument it accepts.
    """
    g = _geometry(x, tuple(weight.shape[2:]), stride, padding, dilation)
    return F.conv2d(_pad(x, g), weight, bias, (g.sh, g.sw), 0, (g.dh, g.dw), groups)


def channel_shuffle(x, groups):
    """ShuffleNet's shuffle: channels viewed as (groups, C/groups), transposed, flattened.

    Output channel j*groups + i is input channel i*(C/groups) + j, the
    :func:`sparseconv.channel_shuffle_permutation` of the core.
    """
    n, c = x.shape[:2]
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or c % groups:
        raise ValueError(f"groups must be a positive int dividing the {c} channels, got {groups!r}")
    return x.reshape(n, groups, c // groups, *x.shape[2:]).transpose(1, 2).reshape(x.shape)


def igc_conv2d(x, primary, secondary, L, M, stride=1, padding=0, dilation=1):
    """IGCV1: primary group conv (L groups) -> shuffle -> secondary 1x1 group conv (M groups) -> shuffle back.

    Parameters
    ----------
    x : tensor (N, L*M, H, W)
    primary : tensor (L*M, M, kH, kW)
    secondary : tensor (L*M, L, 1, 1)
    L, M : int

    Notes
    -----
    y = P^T W_d P W_p x with P the channel shuffle with L groups; a shuffle
    with M groups on L*M channels is its inverse.
    """
    G = L * M
    if tuple(primary.shape[:2]) != (G, M) or primary.dim() != 4:
        raise ValueError(f"primary must have shape (L*M, M, kH, kW) = ({G}, {M}, kH, kW), got {tuple(primary.shape)}")
    if tuple(secondary.shape) != (G, L, 1, 1):
        raise ValueError(f"secondary must have shape (L*M, L, 1, 1) = ({G}, {L}, 1, 1), got {tuple(secondary.shape)}")
    y = conv2d(x, primary, None, stride, padding, dilation, groups=L)
    y = channel_shuffle(y, L)
    y = F.conv2d(y, secondary, groups=M)
    return channel_shuffle(y, M)


def sign_ste(x):
    """sign(x) with sign(0) = +1; gradient by the clipped straight-through estimator (1 where |x| <= 1)."""
    clipped = x.clamp(-1, 1)
    return clipped + (torch.where(x < 0, -torch.ones_like(x), torch.ones_like(x)) - clipped).detach()


def fake_quantize(x, scale, zero_point, qmin, qmax):
    """scale * (clamp(round(x / scale) + zero_point, qmin, qmax) - zero_point), gradient passed straight through.

    Rounding is half to even (torch.round, as NumPy's rint), computed in
    float64 so that it matches the core's integer kernels code for code.
    """
    scale = torch.as_tensor(scale, dtype=torch.float64, device=x.device)
    zero_point = torch.as_tensor(zero_point, dtype=torch.float64, device=x.device)
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    q = torch.clamp(torch.round(x.double() / safe) + zero_point, qmin, qmax)
    dq = ((q - zero_point) * scale).to(x.dtype)
    return x + (dq - x).detach()


def binary_input_conv2d(x, weight, stride=1, padding=0, dilation=1, activation_scale=True):
    """XNOR-Net's binary-input convolution: conv of sign(x) (zero padding binarises to +1), times K.

    K[n, h, w] = mean |x| over each receptive field (a conv of |x| with a
    box filter), when ``activation_scale``; the sign's gradient is the
    clipped straight-through estimator of :func:`sign_ste`.
    """
    c_in, kh, kw = weight.shape[1:]
    g = _geometry(x, (kh, kw), stride, padding, dilation)
    xp = _pad(x, g)
    y = F.conv2d(sign_ste(xp), weight, None, (g.sh, g.sw), 0, (g.dh, g.dw))
    if activation_scale:
        box = x.new_full((1, c_in, kh, kw), 1.0 / (c_in * kh * kw))
        y = y * F.conv2d(xp.abs(), box, None, (g.sh, g.sw), 0, (g.dh, g.dw))
    return y


def quantize_input(x, bits, scale=None):
    """x fake-quantized to ``bits``-bit symmetric integers: with ``scale``, or max |x| / (2^(bits-1) - 1).

    The rule of :meth:`sparseconv.QuantizedWeight.quantize_columns` for a
    whole conv2d input (max |x| = max |cols|).
    """
    qmax = 2 ** (bits - 1) - 1
    if scale is None:
        peak = float(x.detach().abs().max()) if x.numel() else 0.0
        scale = (peak or 1.0) / qmax
    return fake_quantize(x, scale, 0.0, -qmax, qmax)


def _tensor(a, like, dtype=None):
    return torch.as_tensor(np.ascontiguousarray(a), device=like.device, dtype=dtype or like.dtype)


def _pointwise(op):
    return op.kernel_shape[2:] == (1, 1)


def operator_conv2d(x, op, stride=1, padding=0, dilation=1):
    """Apply a sparseconv :class:`~sparseconv.WeightOperator` with torch operations.

    Equals ``sparseconv.conv2d(x, op, stride=..., padding=..., dilation=...)``
    on any device. How each family runs:

    - dense, sparse: one conv with the (dense) weight; a sparse weight is
      applied as a masked dense tensor (torch has no sparse convolution; the
      zeros are multiplied, not skipped);
    - block-diagonal: ``groups``; low rank: two convs; spatial low rank: a
      kH x 1 then a 1 x kW conv; channel reduction: the small conv scattered;
    - binary: alpha * sign(W); binary activations through :func:`sign_ste`
      (zero padding binarises to +1) and XNOR-Net's K as a conv of |x|;
    - quantized: the dequantized weight; integer activations by
      :func:`fake_quantize` with the calibrated or per-call scale;
    - codebook: the weight gathered from the codebook;
    - permutation: an index; products (IGCV1/2/3 included): the factors
      chained, 1x1 factors before the spatial one at the input's resolution.
    """
    from .. import (BinaryWeight, BlockDiagonalWeight, ChannelReducedWeight, CodebookWeight, IGCV1, LowRankWeight,
                    Permutation, ProductWeight, QuantizedWeight, SpatialLowRankWeight)

    c_out, c_in, kh, kw = op.kernel_shape
    if x.shape[1] != c_in:
        raise ValueError(f"x has C_in={x.shape[1]} channels, the operator expects C_in={c_in}")
    g = _geometry(x, (kh, kw), stride, padding, dilation)
    pointwise_geom = (g.sh, g.sw, g.top, g.bottom, g.left, g.right) == (1, 1, 0, 0, 0, 0)
    if isinstance(op, IGCV1):
        return igc_conv2d(x, _tensor(op.primary.weight, x), _tensor(op.secondary.weight, x), op.L, op.M, stride,
                          padding, dilation)
    if isinstance(op, ProductWeight):
        pre, spatial, post = op._split()
        if spatial is None and not pointwise_geom:
            return conv2d(x, _tensor(op.to_weight(), x), None, stride, padding, dilation)
        y = x
        for f in pre:
            y = operator_conv2d(y, f)
        if spatial is not None:
            y = operator_conv2d(y, spatial, stride, padding, dilation)
        for f in post:
            y = operator_conv2d(y, f)
        return y
    if isinstance(op, Permutation):
        if not pointwise_geom:
            return conv2d(x, _tensor(op.to_weight(), x), None, stride, padding, dilation)
        return x[:, _tensor(op.perm, x, torch.long)]
    if isinstance(op, BlockDiagonalWeight):
        return conv2d(x, _tensor(op.weight, x), None, stride, padding, dilation, groups=op.groups)
    if isinstance(op, LowRankWeight):
        first, second = op.as_convs()
        return F.conv2d(conv2d(x, _tensor(first, x), None, stride, padding, dilation), _tensor(second, x))
    if isinstance(op, SpatialLowRankWeight):
        y = F.conv2d(F.pad(x, (0, 0, g.top, g.bottom)), _tensor(op.vertical, x), stride=(g.sh, 1),
                     dilation=(g.dh, 1))
        return F.conv2d(F.pad(y, (g.left, g.right, 0, 0)), _tensor(op.horizontal, x), stride=(1, g.sw),
                        dilation=(1, g.dw))
    if isinstance(op, ChannelReducedWeight):
        keep_in = _tensor(op.keep_in, x, torch.long)
        small = conv2d(x[:, keep_in], _tensor(op.small, x), None, stride, padding, dilation)
        out = x.new_zeros((x.shape[0], c_out) + tuple(small.shape[2:]))
        out[:, _tensor(op.keep_out, x, torch.long)] = small
        return out
    if isinstance(op, BinaryWeight):
        weight = _tensor(op.to_weight(), x)
        if op.activations == "float":
            return conv2d(x, weight, None, stride, padding, dilation)
        return binary_input_conv2d(x, weight, stride, padding, dilation, op.activation_scale)
    if isinstance(op, QuantizedWeight):
        if op.activations is not None:
            x = quantize_input(x, op.activations, op.act_scale)
        return conv2d(x, _tensor(op.to_weight(), x), None, stride, padding, dilation)
    if isinstance(op, CodebookWeight):
        return conv2d(x, _codebook_weight(_tensor(op.codebook, x), _tensor(op._idx, x, torch.long), op.kernel_shape),
                      None, stride, padding, dilation)
    return conv2d(x, _tensor(op.to_weight(), x), None, stride, padding, dilation)


def _codebook_weight(codebook, idx, kernel_shape):
    """W[o, k] = codebook[idx[o, k]] (shared) or codebook[o, idx[o, k]] (per channel), by a gather."""
    if codebook.dim() == 1:
        return codebook[idx].reshape(kernel_shape)
    return codebook.gather(1, idx).reshape(kernel_shape)
