"""The torch primitives: convolutions with sparseconv's conventions, IGC, STEs (re-exported by ``functional``).

Device-agnostic: every tensor made here is made on the device (and in the
dtype) of the input. Like torch's and sparseconv's, "convolution" here is
cross-correlation.
"""

import torch
import torch.nn.functional as F

from .._validation import geometry

__all__ = ["binary_input_conv2d", "channel_shuffle", "conv2d", "fake_quantize", "igc_conv2d", "quantize_input",
           "sign_ste"]


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
    """sign(x) with sign(0) = +1; gradient by the clipped straight-through estimator (1 where abs(x) <= 1)."""
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

    K[n, h, w] = mean(abs(x)) over each receptive field (a conv of abs(x) with a
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
    """x fake-quantized to ``bits``-bit symmetric integers: with ``scale``, or max(abs(x)) / (2^(bits-1) - 1).

    The rule of :meth:`sparseconv.QuantizedWeight.quantize_columns` for a
    whole conv2d input (max(abs(x)) = max(abs(cols))).
    """
    qmax = 2 ** (bits - 1) - 1
    if scale is None:
        peak = float(x.detach().abs().max()) if x.numel() else 0.0
        scale = (peak or 1.0) / qmax
    return fake_quantize(x, scale, 0.0, -qmax, qmax)


def _codebook_weight(codebook, idx, kernel_shape):
    """W[o, k] = codebook[idx[o, k]] (shared) or codebook[o, idx[o, k]] (per channel), by a gather."""
    if codebook.dim() == 1:
        return codebook[idx].reshape(kernel_shape)
    return codebook.gather(1, idx).reshape(kernel_shape)
