"""torch modules: the IGC convolutions and blocks, and one trainable module per operator family.

Every family module is built from a sparseconv operator (``from_operator``),
gives back an operator (``to_operator()``), and runs the same computation as
``sparseconv.conv2d`` with it, on any device, with gradients: float
parameters are ``nn.Parameter``, index and mask arrays are buffers.
"""

import importlib
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from . import _ops as SF

__all__ = ["BinaryConv2d", "BlockDiagonalConv2d", "ChannelPermute", "ChannelReducedConv2d", "CodebookConv2d",
           "DenseConv2d", "IGCV1Conv2d", "IGCV2Conv2d", "IGCV3Block", "LowRankConv2d", "ProductConv2d",
           "QuantConv2d", "SparseConv2d", "SpatialLowRankConv2d", "module_class", "module_for", "with_bias"]


def _param(a):
    return nn.Parameter(torch.from_numpy(np.array(a, copy=True)))


def _buffer(a):
    return torch.from_numpy(np.array(a, copy=True))


def _numpy(t):
    return t.detach().cpu().numpy()


def _torch_dtype(op):
    return torch.from_numpy(np.zeros(0, op.dtype)).dtype


def _check_int(value, name):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _same_padding(kernel_size, dilation):
    kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    return (dh * (kh - 1) // 2, dw * (kw - 1) // 2)


class _Geometry(nn.Module):
    """Holds stride, padding and dilation, and the optional bias, for a conv-like module."""

    def __init__(self, stride=1, padding=0, dilation=1, bias=None):
        super().__init__()
        self.stride, self.padding, self.dilation = stride, padding, dilation
        self.bias = None if bias is None else nn.Parameter(torch.as_tensor(bias).clone())

    @classmethod
    def from_operator(cls, op, stride=1, padding=0, dilation=1, bias=None):
        """The module that runs ``op`` with this geometry and bias."""
        return cls(op, stride, padding, dilation, bias)

    def _finish(self, y):
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1).to(y.dtype)

    def extra_repr(self):
        return f"stride={self.stride}, padding={self.padding}, dilation={self.dilation}, bias={self.bias is not None}"


class DenseConv2d(_Geometry):
    """A dense weight (:class:`sparseconv.DenseWeight`)."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        super().__init__(stride, padding, dilation, bias)
        self.weight = _param(op.to_weight())

    def forward(self, x):
        return self._finish(SF.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation))

    def to_operator(self):
        from .. import DenseWeight

        return DenseWeight(_numpy(self.weight))


class BlockDiagonalConv2d(_Geometry):
    """A group convolution (:class:`sparseconv.BlockDiagonalWeight`)."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        super().__init__(stride, padding, dilation, bias)
        self.weight = _param(op.weight)
        self.groups = op.groups

    def forward(self, x):
        return self._finish(SF.conv2d(x, self.weight, None, self.stride, self.padding, self.dilation, self.groups))

    def to_operator(self):
        from .. import BlockDiagonalWeight

        return BlockDiagonalWeight(_numpy(self.weight), self.groups)


class LowRankConv2d(_Geometry):
    """kH x kW conv to r channels, then 1x1 (:class:`sparseconv.LowRankWeight`)."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        super().__init__(stride, padding, dilation, bias)
        first, second = op.as_convs()
        self.first, self.second = _param(first), _param(second)
        self.kernel_shape = op.kernel_shape

    def forward(self, x):
        y = SF.conv2d(x, self.first, None, self.stride, self.padding, self.dilation)
        return self._finish(F.conv2d(y, self.second))

    def to_operator(self):
        from .. import LowRankWeight

        r = self.first.shape[0]
        return LowRankWeight(_numpy(self.second).reshape(-1, r), _numpy(self.first).reshape(r, -1),
                             self.kernel_shape)


class SpatialLowRankConv2d(_Geometry):
    """kH x 1 filters to r channels, then 1 x kW (:class:`sparseconv.SpatialLowRankWeight`)."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        super().__init__(stride, padding, dilation, bias)
        self.vertical, self.horizontal = _param(op.vertical), _param(op.horizontal)

    def forward(self, x):
        kh, kw = self.vertical.shape[2], self.horizontal.shape[3]
        g = SF._geometry(x, (kh, kw), self.stride, self.padding, self.dilation)
        y = F.conv2d(F.pad(x, (0, 0, g.top, g.bottom)), self.vertical, stride=(g.sh, 1), dilation=(g.dh, 1))
        y = F.conv2d(F.pad(y, (g.left, g.right, 0, 0)), self.horizontal, stride=(1, g.sw), dilation=(1, g.dw))
        return self._finish(y)

    def to_operator(self):
        from .. import SpatialLowRankWeight

        return SpatialLowRankWeight(_numpy(self.vertical), _numpy(self.horizontal))


class ChannelReducedConv2d(_Geometry):
    """The small dense conv on the kept channels, zeros elsewhere (:class:`sparseconv.ChannelReducedWeight`)."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        super().__init__(stride, padding, dilation, bias)
        self.small = _param(op.small)
        self.register_buffer("keep_in", _buffer(op.keep_in))
        self.register_buffer("keep_out", _buffer(op.keep_out))
        self.kernel_shape = op.kernel_shape

    def forward(self, x):
        small = SF.conv2d(x[:, self.keep_in], self.small, None, self.stride, self.padding, self.dilation)
        out = small.new_zeros((x.shape[0], self.kernel_shape[0]) + tuple(small.shape[2:]))
        out[:, self.keep_out] = small
        return self._finish(out)

    def to_operator(self):
        from .. import ChannelReducedWeight

        return ChannelReducedWeight(_numpy(self.small), _numpy(self.keep_out), _numpy(self.keep_in),
                                    self.kernel_shape)


class SparseConv2d(_Geometry):
    """A pruned weight as its stored values scattered into a dense kernel (:class:`sparseconv.SparseWeight`).

    torch has no sparse convolution: the forward pass rebuilds the dense
    weight from the values (differentiably; pruned entries stay zero and get
    no gradient) and runs a dense conv. The index arrays are buffers.
    """

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        from .. import SparseWeight

        super().__init__(stride, padding, dilation, bias)
        self.format, self.structure, self.kernel_shape = op.format, op.structure, op.kernel_shape
        self._value_key = "values" if op.format == "nm" else "data"
        values = op.arrays[self._value_key]
        self.values = _param(values)
        self._index_keys = [k for k in op.arrays if k != self._value_key]
        for k in self._index_keys:
            self.register_buffer(f"index_{k}", _buffer(op.arrays[k]))
        # where each stored value lands in the flat (C_out * K) weight: label the values 1..n and look
        labels = np.arange(1, values.size + 1, dtype=np.float64).reshape(values.shape)
        probe = SparseWeight(op.kernel_shape, op.format, dict(op.arrays, **{self._value_key: labels}))
        dense = probe.to_dense().ravel()
        where = np.flatnonzero(dense)
        positions = np.empty(values.size, np.int64)
        positions[dense[where].astype(np.int64) - 1] = where
        self.register_buffer("positions", torch.from_numpy(positions))

    def dense_weight(self):
        flat = self.values.new_zeros(int(np.prod(self.kernel_shape)))
        return flat.index_put((self.positions,), self.values.reshape(-1)).reshape(self.kernel_shape)

    def forward(self, x):
        return self._finish(SF.conv2d(x, self.dense_weight(), None, self.stride, self.padding, self.dilation))

    def to_operator(self):
        from .. import SparseWeight

        arrays = {k: _numpy(getattr(self, f"index_{k}")) for k in self._index_keys}
        arrays[self._value_key] = _numpy(self.values)
        return SparseWeight(self.kernel_shape, self.format, arrays, self.structure)


class BinaryConv2d(_Geometry):
    """alpha * sign(W) with a latent float weight trained through the straight-through estimator.

    Forward: the latent weight's signs (sign(0) = +1) times alpha, with alpha
    recomputed from the latent weight as in :func:`sparseconv.binarize`
    (mean(abs(w)) per channel or for the tensor, or 1); binary activations as in
    :func:`.functional.operator_conv2d`.
    """

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None, scale=None):
        super().__init__(stride, padding, dilation, bias)
        self.weight = _param(op.to_weight())
        self.activations = op.activations  # None (BinaryWeight: float) or 1 (BinaryInputWeight: binary)
        self.activation_scale = getattr(op, "activation_scale", True)
        if scale is None:  # what makes alpha(to_weight()) = op.alpha: one value for all rows -> "tensor"
            alpha = op.alpha
            scale = None if np.all(alpha == 1) else ("tensor" if np.all(alpha == alpha[0]) else "channel")
        self.scale = scale

    def binary_weight(self):
        w = self.weight
        if self.scale == "channel":
            alpha = w.detach().abs().mean(dim=(1, 2, 3), keepdim=True)
        elif self.scale == "tensor":
            alpha = w.detach().abs().mean()
        else:
            alpha = torch.ones((), dtype=w.dtype, device=w.device)
        return alpha * SF.sign_ste(w)

    def forward(self, x):
        w = self.binary_weight()
        if self.activations is None:
            return self._finish(SF.conv2d(x, w, None, self.stride, self.padding, self.dilation))
        return self._finish(SF.binary_input_conv2d(x, w, self.stride, self.padding, self.dilation,
                                                   self.activation_scale))

    def to_operator(self):
        from .. import binarize

        return binarize(_numpy(self.weight), self.scale, self.activations, self.activation_scale)


class QuantConv2d(_Geometry):
    """Fake-quantized conv: a latent float weight rounded to the operator's grid (fixed scales) with STE."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        super().__init__(stride, padding, dilation, bias)
        self.weight = _param(op.to_weight())
        # QuantizedWeight: float activations; IntegerInputWeight: integer ones, at act_scale
        self.bits, self.scheme, self.activations = op.bits, op.scheme, op.activations
        self.act_scale = getattr(op, "act_scale", None)
        self.register_buffer("scale", _buffer(op.scale.astype(np.float64)))
        self.register_buffer("zero_point", _buffer(op.zero_point.astype(np.float64)))

    def _range(self):
        if self.scheme == "symmetric":
            q = 2 ** (self.bits - 1) - 1
            return -q, q
        return 0, 2 ** self.bits - 1

    def quantized_weight(self):
        lo, hi = self._range()
        shape = (-1, 1, 1, 1)
        return SF.fake_quantize(self.weight, self.scale.view(shape), self.zero_point.view(shape), lo, hi)

    def forward(self, x):
        if self.activations is not None:
            x = SF.quantize_input(x, self.activations, self.act_scale)
        return self._finish(SF.conv2d(x, self.quantized_weight(), None, self.stride, self.padding, self.dilation))

    def to_operator(self):
        from .. import IntegerInputWeight, QuantizedWeight

        w = self.quantized_weight().detach().double().cpu().numpy().reshape(self.weight.shape[0], -1)
        scale, zp = _numpy(self.scale), _numpy(self.zero_point)
        safe = np.where(scale > 0, scale, 1.0)
        codes = np.rint(w / safe[:, None]) + zp[:, None]
        op = QuantizedWeight(codes.astype(np.int64), scale, zp.astype(np.int64), self.bits, self.scheme,
                             tuple(self.weight.shape), self.weight.detach().cpu().numpy().dtype)
        return op if self.activations is None else IntegerInputWeight(op, self.activations, self.act_scale)


class CodebookConv2d(_Geometry):
    """W = codebook[idx]: the centroids are parameters (fine-tuned as in Deep Compression), the indices a buffer."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        super().__init__(stride, padding, dilation, bias)
        self.codebook = _param(op.codebook)
        self.register_buffer("idx", _buffer(op.idx.astype(np.int64)))
        self.kernel_shape = op.kernel_shape

    def forward(self, x):
        w = SF._codebook_weight(self.codebook, self.idx, self.kernel_shape)
        return self._finish(SF.conv2d(x, w, None, self.stride, self.padding, self.dilation))

    def to_operator(self):
        from .. import CodebookWeight

        return CodebookWeight(_numpy(self.idx), _numpy(self.codebook), self.kernel_shape)


class ChannelPermute(nn.Module):
    """Output channel i = input channel perm[i] (:class:`sparseconv.Permutation`)."""

    def __init__(self, op):
        super().__init__()
        self.register_buffer("perm", _buffer(op.perm))

    @classmethod
    def from_operator(cls, op, stride=1, padding=0, dilation=1, bias=None):
        """An index where the geometry leaves pixels in place; else the permutation's dense 1x1 conv."""
        if stride not in (1, (1, 1)) or padding not in (0, (0, 0), "valid", "same"):  # a 1x1 kernel moves pixels
            from .. import DenseWeight

            return DenseConv2d(DenseWeight(op.to_weight()), stride, padding, dilation, bias)
        return with_bias(cls(op), bias)

    def forward(self, x):
        return x[:, self.perm]

    def to_operator(self):
        from .. import Permutation

        return Permutation(_numpy(self.perm))


class ProductConv2d(_Geometry):
    """A chain of factor modules (:class:`sparseconv.ProductWeight`): 1x1 factors before the spatial one
    run at the input's resolution, the spatial one with the stride, padding and dilation."""

    def __init__(self, op, stride=1, padding=0, dilation=1, bias=None):
        from .. import IGCV3

        super().__init__(stride, padding, dilation, bias)
        self.igcv3_groups = op.groups if isinstance(op, IGCV3) else None  # to give back an IGCV3, not a product
        pre, spatial, post = op._split()
        self.pre = nn.ModuleList(module_for(f) for f in pre)
        self.spatial = None if spatial is None else module_for(spatial, stride, padding, dilation)
        self.post = nn.ModuleList(module_for(f) for f in post)

    def forward(self, x):
        for f in self.pre:
            x = f(x)
        if self.spatial is not None:
            x = self.spatial(x)
        for f in self.post:
            x = f(x)
        return self._finish(x)

    def to_operator(self):
        from .. import ProductWeight

        applied = list(self.pre) + ([self.spatial] if self.spatial is not None else []) + list(self.post)
        factors = [m.to_operator() for m in applied[::-1]]
        if self.igcv3_groups is not None:
            from .. import IGCV3

            reduce, depthwise, _, expand = factors
            return IGCV3(expand.weight, depthwise.weight, reduce.weight, self.igcv3_groups)
        return ProductWeight(factors)


def _he_(t, fan_in):
    with torch.no_grad():
        t.normal_(0.0, math.sqrt(2.0 / fan_in))
    return t


class IGCV1Conv2d(nn.Module):
    """IGCV1 (L, M) on G = L*M channels: primary group conv, shuffle, secondary 1x1 group conv, shuffle back.

    Parameters
    ----------
    channels : int (= L*M)
    L, M : int
    kernel_size, stride, dilation : as for nn.Conv2d
    padding : None (keep the size at stride 1: dilation*(k-1)//2) or as for nn.Conv2d
    bias : bool
    backend : 'auto', 'composed' or 'fused'
        :func:`sparseconv.torch.functional.igc_backend`: the composed torch
        ops, or one Triton kernel per output tile (forward; the backward
        runs the composed ops). ``'auto'`` is ``'composed'``: the fused
        kernel measured slower on an H200 (0.17-1.02x, docs/benchmarks.md).

    Notes
    -----
    Parameters: L M^2 kH kW + M L^2 (+ G bias). He initialisation as in
    :meth:`sparseconv.IGCV1.random`. ``to_operator()`` gives the
    :class:`sparseconv.IGCV1`; ``from_operator`` the reverse.
    """

    def __init__(self, channels, L, M, kernel_size=3, stride=1, padding=None, dilation=1, bias=False,
                 backend="auto"):
        super().__init__()
        self.backend = SF.check_backend(backend)
        L, M = _check_int(L, "L"), _check_int(M, "M")
        if _check_int(channels, "channels") != L * M:
            raise ValueError(f"channels must equal L*M = {L * M}, got {channels}")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.L, self.M = L, M
        self.stride, self.dilation = stride, dilation
        self.padding = _same_padding((kh, kw), dilation) if padding is None else padding
        self.primary = nn.Parameter(_he_(torch.empty(L * M, M, kh, kw), M * kh * kw))
        self.secondary = nn.Parameter(_he_(torch.empty(L * M, L, 1, 1), L))
        self.bias = nn.Parameter(torch.zeros(L * M)) if bias else None

    @classmethod
    def from_operator(cls, op, stride=1, padding=0, dilation=1, bias=None):
        kh, kw = op.kernel_shape[2:]
        m = cls(op.L * op.M, op.L, op.M, (kh, kw), stride, padding, dilation).to(_torch_dtype(op))
        with torch.no_grad():
            m.primary.copy_(torch.from_numpy(op.primary.weight))
            m.secondary.copy_(torch.from_numpy(op.secondary.weight))
        return with_bias(m, bias)

    def forward(self, x):
        y = SF.igc_conv2d(x, self.primary, self.secondary, self.L, self.M, self.stride, self.padding, self.dilation,
                          self.backend)
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def to_operator(self):
        from .. import IGCV1

        return IGCV1(_numpy(self.primary), _numpy(self.secondary), self.L, self.M)

    def extra_repr(self):
        return f"L={self.L}, M={self.M}, stride={self.stride}, padding={self.padding}, backend={self.backend!r}"


class IGCV2Conv2d(nn.Module):
    """IGCV2: a channel-wise kH x kW conv, then 1x1 group convs of branch sizes K_2 ... K_L, interleaved.

    The interleaving permutations are the core's (:class:`sparseconv.IGCV2`):
    mixed-radix digit permutations when the branch sizes multiply to C
    (strictly complementary), channel shuffles otherwise. With
    ``backend='fused'`` (:func:`sparseconv.torch.functional.igc_backend`)
    each permutation is read or written by index inside the neighbouring
    1x1 group conv's Triton kernel (:func:`~sparseconv.torch.functional.permuted_pointwise`);
    ``backend='auto'`` (the default) takes it for inference on CUDA, where
    it was measured faster (1.37-2.88x the composed ops on an H200).
    """

    def __init__(self, channels, branch_sizes, kernel_size=3, stride=1, padding=None, dilation=1, bias=False,
                 backend="auto"):
        from .. import IGCV2, Permutation

        super().__init__()
        self.backend = SF.check_backend(backend)
        C = _check_int(channels, "channels")
        sizes = [_check_int(k, "branch size") for k in branch_sizes]
        for k in sizes:
            if C % k:
                raise ValueError(f"branch size {k} must divide channels={C}")
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
        self.channels, self.branch_sizes = C, tuple(sizes)
        self.stride, self.dilation = stride, dilation
        self.padding = _same_padding((kh, kw), dilation) if padding is None else padding
        self.depthwise = nn.Parameter(_he_(torch.empty(C, 1, kh, kw), kh * kw))
        self.pointwise = nn.ParameterList(nn.Parameter(_he_(torch.empty(C, k, 1, 1), k)) for k in sizes)
        skeleton = IGCV2(np.zeros((C, 1, kh, kw)), [np.zeros((C, k, 1, 1)) for k in sizes])
        self._steps = []  # ("perm", i) or ("pw", i), in the order applied after the channel-wise conv
        n_perm = n_pw = 0
        for f in skeleton.factors[::-1][1:]:
            if isinstance(f, Permutation):
                self.register_buffer(f"perm{n_perm}", torch.from_numpy(f.perm.copy()))
                self._steps.append(("perm", n_perm))
                n_perm += 1
            else:
                self._steps.append(("pw", n_pw))
                n_pw += 1
        self._folded = _fold_permutations(self._steps)
        for j, (_, before, after) in enumerate(self._folded):  # what the fused forward reads, composed once
            out = self._perm(after)
            self.register_buffer(f"fold_in{j}", self._perm(before), persistent=False)
            self.register_buffer(f"fold_out{j}", out, persistent=False)
            self.register_buffer(f"fold_out_index{j}", None if out is None else torch.argsort(out), persistent=False)
        self.bias = nn.Parameter(torch.zeros(C)) if bias else None

    @classmethod
    def from_operator(cls, op, stride=1, padding=0, dilation=1, bias=None):
        kh, kw = op.kernel_shape[2:]
        m = cls(op.kernel_shape[0], op.branch_sizes, (kh, kw), stride, padding, dilation).to(_torch_dtype(op))
        with torch.no_grad():
            m.depthwise.copy_(torch.from_numpy(op.depthwise.weight))
            for p, f in zip(m.pointwise, op.pointwise):
                p.copy_(torch.from_numpy(f.weight))
        return with_bias(m, bias)

    def forward(self, x):
        y = SF.conv2d(x, self.depthwise, None, self.stride, self.padding, self.dilation, groups=self.channels)
        if SF.igc_backend(y, self.backend, "pointwise", self.parameters()) == "fused":
            for j, (i, _, _) in enumerate(self._folded):
                w = self.pointwise[i]
                y = SF._pointwise(y, w, self.channels // w.shape[1], getattr(self, f"fold_in{j}"),
                                  getattr(self, f"fold_out{j}"), "fused", getattr(self, f"fold_out_index{j}"))
        else:
            for kind, i in self._steps:
                if kind == "perm":
                    y = y[:, getattr(self, f"perm{i}")]
                else:
                    w = self.pointwise[i]
                    y = F.conv2d(y, w, groups=self.channels // w.shape[1])
        return y if self.bias is None else y + self.bias.view(1, -1, 1, 1)

    def _perm(self, steps):
        """The permutation that applying the perm buffers ``steps`` in turn makes (None for none)."""
        perm = None
        for i in steps:
            p = getattr(self, f"perm{i}")
            perm = p if perm is None else perm[p]  # y[:, a][:, b] = y[:, a[b]]
        return perm

    def to_operator(self):
        from .. import IGCV2

        return IGCV2(_numpy(self.depthwise), [_numpy(p) for p in self.pointwise])


def _fold_permutations(steps):
    """IGCV2's steps as (pointwise i, perms read before it, perms written after it): every permutation folded into
    the next 1x1 conv's input index, and those after the last one into its output index."""
    folded, pending = [], []
    for kind, i in steps:
        if kind == "perm":
            pending.append(i)
        else:
            folded.append([i, tuple(pending), ()])
            pending = []
    if folded:
        folded[-1][2] = tuple(pending)
    elif pending:
        raise ValueError("an IGCV2 with permutations but no 1x1 conv to fold them into")
    return [tuple(f) for f in folded]


class IGCV3Block(nn.Module):
    """The IGCV3 block of the authors' code (Sun, Li, Liu, Wang, BMVC 2018).

    1x1 group conv (G1 groups) expanding C_in -> E = expansion * C_in, BN, no
    activation; channel shuffle with G1; 3x3 depthwise conv with the stride,
    BN, ReLU6; 1x1 group conv (G2 groups) E -> C_out, BN, linear; identity
    residual when stride = 1 and C_in = C_out. The expansion conv is kept
    even when expansion = 1; convs have no bias. Without its BN and ReLU6 the
    block is the linear operator :class:`sparseconv.IGCV3`.

    With ``backend='fused'`` (:func:`sparseconv.torch.functional.igc_backend`)
    the expansion conv runs as a Triton kernel that writes its channels in
    shuffled order (the shuffle costs no memory pass), and BN1 runs on the
    shuffled channels with its parameters and running statistics indexed
    the same way. ``backend='auto'`` stays composed: fused, the block ran
    0.60-1.74x as fast on an H200, slower on half the shapes.
    """

    def __init__(self, in_channels, out_channels, expansion=6, stride=1, groups=(2, 2), kernel_size=3,
                 backend="auto"):
        from .. import channel_shuffle_permutation

        super().__init__()
        self.backend = SF.check_backend(backend)
        c_in, c_out = _check_int(in_channels, "in_channels"), _check_int(out_channels, "out_channels")
        t = _check_int(expansion, "expansion")
        G1, G2 = (_check_int(g, "groups") for g in groups)
        E = c_in * t
        if c_in % G1 or E % G1 or E % G2 or c_out % G2:
            raise ValueError(f"groups=({G1}, {G2}) must divide in_channels={c_in} and E={E} (G1), "
                             f"E and out_channels={c_out} (G2)")
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride!r}")
        self.groups, self.stride = (G1, G2), stride
        self.expand = nn.Conv2d(c_in, E, 1, groups=G1, bias=False)
        self.bn1 = nn.BatchNorm2d(E)
        self.depthwise = nn.Conv2d(E, E, kernel_size, stride, kernel_size // 2, groups=E, bias=False)
        self.bn2 = nn.BatchNorm2d(E)
        self.reduce = nn.Conv2d(E, c_out, 1, groups=G2, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.residual = stride == 1 and c_in == c_out
        self.register_buffer("shuffle", _buffer(channel_shuffle_permutation(E, G1).perm.astype(np.int64)),
                             persistent=False)
        self.register_buffer("shuffle_index", torch.argsort(self.shuffle), persistent=False)

    def forward(self, x):
        if SF.igc_backend(x, self.backend, "igcv3_block", self.parameters()) == "fused":
            y = SF._pointwise(x, self.expand.weight, self.groups[0], None, self.shuffle, "fused", self.shuffle_index)
            y = _batch_norm_indexed(self.bn1, y, self.shuffle)
        else:
            y = self.bn1(self.expand(x))
            y = SF.channel_shuffle(y, self.groups[0])
        y = F.relu6(self.bn2(self.depthwise(y)))
        y = self.bn3(self.reduce(y))
        return x + y if self.residual else y

    def to_operator(self):
        """The block's convolutions without BN, ReLU6 and the residual, as :class:`sparseconv.IGCV3`."""
        from .. import IGCV3

        return IGCV3(_numpy(self.expand.weight), _numpy(self.depthwise.weight), _numpy(self.reduce.weight),
                     self.groups)


def _batch_norm_indexed(bn, y, index):
    """``bn`` applied to channels ``index`` of its input, given as y (y[:, k] is channel index[k]).

    What ``nn.BatchNorm2d.forward`` does, with the affine parameters and the
    running statistics read, and updated, through ``index``.
    """
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    use_batch = bn.training or (bn.running_mean is None and bn.running_var is None)
    stats = bn.running_mean is not None and (not bn.training or bn.track_running_stats)
    mean = bn.running_mean[index] if stats else None
    var = bn.running_var[index] if stats else None
    weight = None if bn.weight is None else bn.weight[index]
    bias = None if bn.bias is None else bn.bias[index]
    out = F.batch_norm(y, mean, var, weight, bias, use_batch, factor, bn.eps)
    if stats and use_batch:  # F.batch_norm updated the indexed copies
        with torch.no_grad():
            bn.running_mean[index] = mean
            bn.running_var[index] = var
    return out


class _WithBias(nn.Module):
    """A module without a bias of its own, plus one."""

    def __init__(self, inner, bias):
        super().__init__()
        self.inner = inner
        self.bias = nn.Parameter(torch.as_tensor(bias).clone())

    def forward(self, x):
        return self.inner(x) + self.bias.view(1, -1, 1, 1).to(x.dtype)

    def to_operator(self):
        return self.inner.to_operator()


def with_bias(module, bias):
    """``module`` itself without a bias, else the module plus a trainable bias."""
    return module if bias is None else _WithBias(module, bias)


def module_class(op):
    """The module class an operator's class names (``torch_module``), or None: it runs as its dense weight.

    A plain name is a class of this module; ``"package.module:Class"`` is
    imported (how a family defined outside sparseconv maps to torch).
    """
    name = type(op).torch_module
    if name is None:
        return None
    if ":" in name:
        module, _, attr = name.partition(":")
        return getattr(importlib.import_module(module), attr)
    return globals()[name]


def module_for(op, stride=1, padding=0, dilation=1, bias=None):
    """The trainable module that computes ``sparseconv.conv2d(x, op, bias, stride, padding, dilation)``."""
    cls = module_class(op)
    if cls is None:
        from .. import DenseWeight

        return DenseConv2d(DenseWeight(op.to_weight()), stride, padding, dilation, bias)
    return cls.from_operator(op, stride, padding, dilation, bias)
