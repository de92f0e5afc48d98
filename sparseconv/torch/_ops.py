"""The torch primitives: convolutions with sparseconv's conventions, IGC, STEs (re-exported by ``functional``).

Device-agnostic: every tensor made here is made on the device (and in the
dtype) of the input. Like torch's and sparseconv's, "convolution" here is
cross-correlation.
"""

import functools
import importlib.util

import torch
import torch.nn.functional as F

from .._validation import geometry

__all__ = ["BACKENDS", "IGC_KINDS", "binary_input_conv2d", "channel_shuffle", "conv2d", "fake_quantize", "igc_backend",
           "igc_conv2d", "permuted_pointwise", "quantize_input", "sign_ste"]

#: the ``backend=`` values of the IGC functions and modules
BACKENDS = ("auto", "composed", "fused")


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


def _triton_kernels():
    try:
        from . import _triton
    except ImportError as exc:
        raise ImportError("backend='fused' runs Triton kernels and needs Triton, which ships with torch's CUDA "
                          "builds; on the CPU (its interpreter, for tests): pip install triton") from exc
    return _triton


def check_backend(backend):
    """``backend`` itself if it is one of :data:`BACKENDS`; else a TypeError or ValueError naming them."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
    return backend


#: what an IGC function or module computes: ``igc_backend``'s ``kind``
IGC_KINDS = ("igcv1", "pointwise", "igcv3_block")

#: the kinds whose fused kernels ``'auto'`` takes (inference on CUDA): measured faster than the composed ops on every
#: shape and dtype of ``sparseconv bench torch`` on an H200 (docs/benchmarks.md); IGCV1's and the IGCV3 block's were not
_AUTO_FUSED = frozenset({"pointwise"})


def igc_backend(x, backend="auto", kind="igcv1", weights=()):
    """Which implementation an IGC function or module runs on ``x``: ``'composed'`` or ``'fused'``.

    ``'composed'`` chains torch ops (grouped convs, channel-shuffle views);
    ``'fused'`` runs this package's Triton kernels (IGCV1 in one kernel, a
    shuffle folded into the neighbouring grouped 1x1 conv as an index).
    ``'auto'`` takes ``'fused'`` only where it was measured faster, on an
    H200 (``sparseconv bench torch``, docs/benchmarks.md): for
    ``kind='pointwise'`` (:func:`permuted_pointwise`, the 1x1 convs of
    ``IGCV2Conv2d``: 1.37-2.88x as fast as composed), on a CUDA tensor,
    with Triton installed, when no gradient is being recorded for ``x`` or
    ``weights`` (the fused backward recomputes the composed forward) and
    outside ``torch.compile`` (inductor fuses the composed ops itself).
    Otherwise ``'composed'``: the fused IGCV1 kernel ran 0.17-1.02x as fast
    as the composed ops, the fused ``IGCV3Block`` 0.60-1.74x. ``'fused'``
    needs a CUDA tensor, or ``TRITON_INTERPRET=1`` set before triton is
    first imported (Triton's interpreter, on the CPU: slow, for tests).

    Parameters
    ----------
    x : tensor, the input
    backend : 'auto', 'composed' or 'fused'
    kind : 'igcv1', 'pointwise' or 'igcv3_block'
    weights : iterable of tensors, the parameters the call uses (whether a gradient is recorded)
    """
    check_backend(backend)
    if kind not in IGC_KINDS:
        raise ValueError(f"kind must be one of {', '.join(map(repr, IGC_KINDS))}, got {kind!r}")
    if backend == "auto":
        recording = torch.is_grad_enabled() and (x.requires_grad or any(w.requires_grad for w in weights))
        fused = (kind in _AUTO_FUSED and _on_cuda(x) and not recording and not torch.compiler.is_compiling()
                 and _triton_installed())
        return "fused" if fused else "composed"
    if backend == "composed":
        return "composed"
    if not x.is_cuda and not _triton_kernels().INTERPRET:
        raise ValueError(f"backend='fused' runs Triton kernels: x must be a CUDA tensor (got one on {x.device}), or "
                         "TRITON_INTERPRET=1 must be set before triton is first imported (Triton's interpreter)")
    return "fused"


def _on_cuda(x):
    return x.is_cuda


@functools.cache
def _triton_installed():
    return importlib.util.find_spec("triton") is not None


def _igc_composed(x, primary, secondary, L, M, g):
    y = F.conv2d(_pad(x, g), primary, None, (g.sh, g.sw), 0, (g.dh, g.dw), L)
    y = channel_shuffle(y, L)
    y = F.conv2d(y, secondary, groups=M)
    return channel_shuffle(y, M)


def _grads(composed, inputs, needs, grad_out):
    """The gradients of ``composed(*inputs)`` for the inputs that need one (the fused kernels' backward)."""
    with torch.enable_grad():
        leaves = [t.detach().requires_grad_(bool(need)) for t, need in zip(inputs, needs)]
        y = composed(*leaves)
        wrt = [t for t, need in zip(leaves, needs) if need]
        found = iter(torch.autograd.grad(y, wrt, grad_out))
    return [next(found) if need else None for need in needs]


class _FusedIGCV1(torch.autograd.Function):
    """Forward: one Triton kernel; backward: the composed ops' gradients (one recomputation)."""

    @staticmethod
    def forward(ctx, x, primary, secondary, L, M, g):
        ctx.save_for_backward(x, primary, secondary)
        ctx.L, ctx.M, ctx.g = L, M, g
        return _triton_kernels().igcv1_forward(x.contiguous(), primary.contiguous(), secondary.contiguous(), L, M, g)

    @staticmethod
    def backward(ctx, grad):
        L, M, g = ctx.L, ctx.M, ctx.g
        found = _grads(lambda x, p, s: _igc_composed(x, p, s, L, M, g), ctx.saved_tensors, ctx.needs_input_grad[:3],
                       grad)
        return (*found, None, None, None)


def igc_conv2d(x, primary, secondary, L, M, stride=1, padding=0, dilation=1, backend="auto"):
    """IGCV1: primary group conv (L groups) -> shuffle -> secondary 1x1 group conv (M groups) -> shuffle back.

    Parameters
    ----------
    x : tensor (N, L*M, H, W)
    primary : tensor (L*M, M, kH, kW)
    secondary : tensor (L*M, L, 1, 1)
    L, M : int
    backend : 'auto', 'composed' or 'fused'
        See :func:`igc_backend`. ``'fused'`` computes each output tile in
        one kernel: y[l M + m] = sum_i Ws[m L + l, i] z[i M + m] with z the
        primary's output, held in registers.

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
    g = _geometry(x, tuple(primary.shape[2:]), stride, padding, dilation)
    if x.shape[1] != G:
        raise ValueError(f"x has C_in={x.shape[1]} channels, IGCV1 (L={L}, M={M}) expects L*M = {G}")
    if igc_backend(x, backend, "igcv1", (primary, secondary)) == "fused":
        return _FusedIGCV1.apply(x, primary, secondary, L, M, g)
    return _igc_composed(x, primary, secondary, L, M, g)


def _pointwise_composed(x, weight, groups, in_perm, out_perm):
    y = F.conv2d(x if in_perm is None else x[:, in_perm], weight, groups=groups)
    return y if out_perm is None else y[:, out_perm]


class _FusedPointwise(torch.autograd.Function):
    """Forward: one Triton kernel reading and writing channels by index; backward: the composed ops' gradients."""

    @staticmethod
    def forward(ctx, x, weight, groups, in_perm, out_perm, out_index):
        ctx.save_for_backward(x, weight)
        ctx.groups, ctx.in_perm, ctx.out_perm = groups, in_perm, out_perm
        if out_index is None and out_perm is not None:
            out_index = torch.argsort(out_perm)  # where conv channel o is written
        return _triton_kernels().pointwise_forward(x.contiguous(), weight.contiguous(), groups, in_perm, out_index)

    @staticmethod
    def backward(ctx, grad):
        groups, in_perm, out_perm = ctx.groups, ctx.in_perm, ctx.out_perm
        found = _grads(lambda x, w: _pointwise_composed(x, w, groups, in_perm, out_perm), ctx.saved_tensors,
                       ctx.needs_input_grad[:2], grad)
        return (*found, None, None, None, None)


def _check_perm(perm, n, name, x):
    """``perm`` as int64 on x's device, checked to be a permutation of range(n) (not while torch.compile traces)."""
    if perm is None:
        return None
    if not isinstance(perm, torch.Tensor) or perm.is_floating_point() or perm.is_complex():
        raise TypeError(f"{name} must be None or an integer tensor, got {type(perm).__name__}"
                        + (f" of {perm.dtype}" if isinstance(perm, torch.Tensor) else ""))
    if perm.dim() != 1 or perm.shape[0] != n:
        raise ValueError(f"{name} must be 1-D of length {n}, got shape {tuple(perm.shape)}")
    perm = perm.to(device=x.device, dtype=torch.int64)
    if not torch.compiler.is_compiling() and not torch.equal(torch.sort(perm).values,
                                                             torch.arange(n, device=perm.device)):
        raise ValueError(f"{name} must be a permutation of 0 .. {n - 1}")
    return perm


def permuted_pointwise(x, weight, groups=1, in_perm=None, out_perm=None, backend="auto"):
    """A grouped 1x1 conv with channel permutations on either side: ``conv1x1(x[:, in_perm], weight)[:, out_perm]``.

    Parameters
    ----------
    x : tensor (N, C_in, H, W)
    weight : tensor (C_out, C_in / groups, 1, 1)
    groups : int
    in_perm : None or int tensor (C_in,)
        The conv's input channel j is x's channel ``in_perm[j]``.
    out_perm : None or int tensor (C_out,)
        The result's channel k is the conv's output channel ``out_perm[k]``.
    backend : 'auto', 'composed' or 'fused'
        See :func:`igc_backend`. ``'fused'`` reads and writes the channels
        through the indices inside the kernel: the permutations cost no
        memory pass (how IGCV2's and IGCV3's shuffles are folded).
    """
    if x.dim() != 4:
        raise ValueError(f"x must be 4-D (N, C_in, H, W), got shape {tuple(x.shape)}")
    if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1:
        raise ValueError(f"groups must be a positive int, got {groups!r}")
    c_out = weight.shape[0]
    if weight.dim() != 4 or tuple(weight.shape[2:]) != (1, 1) or weight.shape[1] * groups != x.shape[1] \
            or c_out % groups:
        raise ValueError(f"weight must have shape (C_out, C_in/groups, 1, 1) with C_in = {x.shape[1]}, groups = "
                         f"{groups} and C_out a multiple of groups, got {tuple(weight.shape)}")
    in_perm = _check_perm(in_perm, x.shape[1], "in_perm", x)
    out_perm = _check_perm(out_perm, c_out, "out_perm", x)
    return _pointwise(x, weight, groups, in_perm, out_perm, backend)


def _pointwise(x, weight, groups, in_perm, out_perm, backend, out_index=None):
    """:func:`permuted_pointwise` unchecked, for the modules: their permutations are int64 on x's device and valid
    by construction, and checking one's values reads it back to the host (on a GPU, a sync in every forward).
    ``out_index``: argsort(out_perm), which a module keeps rather than recomputing it per call."""
    if igc_backend(x, backend, "pointwise", (weight,)) == "fused":
        return _FusedPointwise.apply(x, weight, groups, in_perm, out_perm, out_index)
    return _pointwise_composed(x, weight, groups, in_perm, out_perm)


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
    if scale is None:  # kept a tensor, so that torch.compile(fullgraph=True) traces it
        peak = x.detach().abs().amax().double() if x.numel() else x.new_zeros((), dtype=torch.float64)
        scale = torch.where(peak > 0, peak, torch.ones_like(peak)) / qmax
    return fake_quantize(x, scale, 0.0, -qmax, qmax)


def _codebook_weight(codebook, idx, kernel_shape):
    """W[o, k] = codebook[idx[o, k]] (shared) or codebook[o, idx[o, k]] (per channel), by a gather."""
    if codebook.dim() == 1:
        return codebook[idx].reshape(kernel_shape)
    return codebook.gather(1, idx).reshape(kernel_shape)
