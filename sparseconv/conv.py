"""conv2d: convolution as the product of a weight operator and im2col columns.

Deep-learning "convolution" is cross-correlation (the kernel is not
flipped); ``conv2d`` follows ``torch.nn.functional.conv2d`` exactly,
including its argument names and grouped-weight layout.
"""

import numba
import numpy as np

from ._kernels import conv as _conv
from . import _blas
from ._threads import blas_single_threaded
from ._validation import as_array, as_input, geometry, integer, positive_int
from .operator import _Weight

__all__ = ["DEFAULT_WORKSPACE", "conv2d"]

#: default bound, in bytes, on the temporary buffers one conv2d call allocates
DEFAULT_WORKSPACE = 256 * 2**20

# When the stride-1 path pays (measured on the benchmark's layer set, see
# docs/benchmarks.md). It computes W_p - W_out wasted columns per output row: it needs
# this share of useful columns to beat the im2col path. Without a cached
# tap-major weight it also re-lays the weight out on every call (memory-bound,
# ~ the weight's bytes, where im2col copies ~kH*kW times the input): then it
# needs a higher share and at least this many output columns per output channel.
_SHIFTED_MIN_USEFUL = 0.75
_SHIFTED_MIN_USEFUL_RELAYOUT = 0.8
_RELAYOUT_MIN_COLUMNS = 0.5
# Without groups, the shifted kernel's per-tap GEMMs are C_in deep: below this
# depth one deeper GEMM on im2col tiles wins (measured 1.2-2.7x faster at depths
# 1-8, 28x28 down to 14x14, 64 output channels; the shifted path wins from 16
# on). Grouped convs keep the shifted path (im2col measured up to 1.5x slower
# for IGCV1's primary with 4-16 channels per group at 56x56).
_SHIFTED_MIN_DEPTH = 16
# Groups so small that a GEMM call per block costs more than its arithmetic
# (measured on the benchmark's layers) run as direct loops: depthwise
# convolutions, and spatial kernels with blocks at most this deep
# (C_in/groups*kH*kW). (Row sums over per-group im2col tiles were measured
# too, and lost to the per-group GEMMs at every group count.)
_DIRECT_MAX_DEPTH = 18
# Output columns per task: enough for an efficient GEMM, small enough that a
# task's im2col tile stays in the core's L2 cache.
_TILE_COLUMNS = 256
#: weights with more entries than this are re-laid out tap-major by numba's threads, smaller ones by NumPy
_PARALLEL_RELAYOUT = 1 << 18


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *,
           workspace=DEFAULT_WORKSPACE):
    """2-D convolution (cross-correlation) of a batch of images, NCHW.

    Parameters
    ----------
    x : array, shape (N, C_in, H, W)
        float32 or float64; float16 is computed in float32, integers and
        bools are converted to float64. Any memory layout.
    weight : array, shape (C_out, C_in/groups, kH, kW), or an operator (WeightOperator or NonlinearWeight)
        A weight array is cast to x's dtype. An operator (of kernel shape
        (C_out, C_in, kH, kW)) stands for its matrix and takes ``groups=1``.
    bias : array, shape (C_out,), optional
    stride, dilation : int or (int, int), >= 1
    padding : int or (int, int) >= 0, or 'valid' or 'same'
        'same' (stride 1 only) pads so that the output has the input's size,
        one more row/column at the bottom/right when the total is odd, as
        torch does.
    groups : int >= 1
        Splits the input and output channels into ``groups`` blocks that are
        convolved separately; must divide C_in and C_out.
    workspace : int, keyword-only
        Bound in bytes on the temporary buffers (im2col tiles, padded input,
        partial products) the call allocates, outputs excluded. Default
        :data:`DEFAULT_WORKSPACE` (256 MiB).

    Returns
    -------
    y : array, shape (N, C_out, H_out, W_out), x's compute dtype

    Notes
    -----
    ``y[n, o, h, w] = bias[o] + sum_{c, i, j} weight[o, c, i, j] * x_pad[n, g*C_in/G + c, h*sH + i*dH, w*sW + j*dW]``
    with g = o // (C_out/G) and x_pad = x with zeros around it. In matrix form,
    per group, ``Y = W @ im2col(x)``. NaN and inf propagate as in torch.
    """
    x = as_input(x)
    if isinstance(weight, _Weight):
        if groups != 1:
            raise ValueError(
                f"groups must be 1 with a WeightOperator (it carries its own structure), got {groups!r}"
            )
        c_out, c_in, kh, kw = weight.kernel_shape
        if x.shape[1] != c_in:
            raise ValueError(f"x has C_in={x.shape[1]} channels, the operator expects C_in={c_in}")
    else:
        weight = as_array(weight, "weight")
        if weight.ndim != 4:
            raise ValueError(f"weight must be 4-D (C_out, C_in/groups, kH, kW), got shape {weight.shape}")
        groups = positive_int(groups, "groups")
        c_out, cin_g, kh, kw = weight.shape
        if x.shape[1] % groups or c_out % groups:
            raise ValueError(
                f"groups={groups} must divide C_in={x.shape[1]} and C_out={c_out}"
            )
        if cin_g * groups != x.shape[1]:
            raise ValueError(
                f"weight expects C_in/groups={cin_g}, so C_in={cin_g * groups}; "
                f"x has C_in={x.shape[1]} (groups={groups})"
            )
    geom = geometry(x.shape, (kh, kw), stride, padding, dilation)
    if bias is not None:
        bias = as_array(bias, "bias")
        if bias.shape != (c_out,):
            raise ValueError(f"bias must have shape (C_out,) = ({c_out},), got {bias.shape}")
        bias = np.ascontiguousarray(bias, dtype=x.dtype)
    workspace = integer(workspace, "workspace", 1, note=" (bytes)")
    if isinstance(weight, _Weight):
        return weight._conv2d(x, geom, bias, int(workspace))
    return dense_conv2d(x, np.ascontiguousarray(weight, dtype=x.dtype), bias, geom, int(groups), int(workspace))


def dense_conv2d(x, weight, bias, geom, groups, workspace, taps=None):
    """Validated driver of the dense kernels: picks the path, sizes the tiles, bounds the workspace.

    ``taps``, if given, is the weight already in the stride-1 kernel's
    layout (see :func:`tap_major`), which saves re-laying it out per call.
    """
    n_img, c_in = x.shape[:2]
    c_out = weight.shape[0]
    p_img = geom.h_out * geom.w_out
    if n_img * c_out * p_img == 0 or c_in == 0:
        out = np.zeros((n_img, c_out, geom.h_out, geom.w_out), x.dtype)
        return out if bias is None else out + bias[None, :, None, None]
    bias = np.zeros(c_out, x.dtype) if bias is None else bias
    kk = geom.kh * geom.kw
    cin_g = weight.shape[1]
    if groups > 1 and (cin_g == 1 or (kk > 1 and cin_g * kk <= _DIRECT_MAX_DEPTH)):
        out = np.empty((n_img, c_out, geom.h_out, geom.w_out), x.dtype)
        if (geom.sh, geom.sw) == (1, 1):
            _conv.conv_direct_shifted(x, weight, bias, out, groups, geom.kh, geom.kw, geom.top, geom.left,
                                      geom.h + geom.top + geom.bottom, geom.w + geom.left + geom.right,
                                      geom.dh, geom.dw)
        else:
            # each phase plane covers the output rows/columns plus the farthest tap's shift
            hq = geom.h_out + (geom.kh - 1) * geom.dh // geom.sh
            wq = geom.w_out + (geom.kw - 1) * geom.dw // geom.sw
            _conv.conv_direct_phases(x, weight, bias, out, groups, geom.kh, geom.kw, geom.sh, geom.sw,
                                     geom.top, geom.left, geom.dh, geom.dw, hq, wq)
        return out
    out = np.empty((n_img, c_out, p_img), x.dtype)  # (N, C_out, H_out*W_out)
    n_threads = numba.get_num_threads()
    with blas_single_threaded(), numba.parallel_chunksize(1):
        if not _shifted(x, weight, taps, bias, out, geom, groups, workspace, n_threads):
            _im2col_tiles(x, weight, bias, out, geom, groups, workspace, n_threads)
    return out.reshape(n_img, c_out, geom.h_out, geom.w_out)


def _blocks(n_units, c_out, n_threads):
    """How many output-channel blocks to cut each unit of work into so every thread has some."""
    if n_units >= n_threads:
        return 1
    return min(c_out, -(-n_threads // n_units))


def _im2col_tiles(x, weight, bias, out, geom, groups, workspace, n_threads):
    n_img, c_in = x.shape[:2]
    c_out = weight.shape[0]
    k = c_in * geom.kh * geom.kw
    total = n_img * geom.h_out * geom.w_out
    isz = x.dtype.itemsize
    n_tiles = -(-total // _TILE_COLUMNS)
    if n_tiles >= n_threads:
        n_tiles = -(-n_tiles // n_threads) * n_threads  # a whole number of rounds
    tile = -(-total // n_tiles)
    m_blocks = _blocks(n_tiles, c_out, n_threads)
    m_block = -(-c_out // m_blocks)
    per_col = n_threads * (k + m_block) * isz
    if tile * per_col > workspace:
        tile = workspace // per_col
        if tile < 1:
            raise ValueError(
                f"workspace={workspace} bytes is too small for this layer; it needs at least {per_col}"
            )
    ws_cols = np.empty((n_threads, k * tile), x.dtype)
    ws_out = np.empty((n_threads, m_block * tile), x.dtype)
    _conv.conv_im2col(_blas.address(x.dtype), x, weight.reshape(c_out, -1), bias, out, ws_cols, ws_out, groups,
                      tile, m_blocks, *geom.kernel_args)


def tap_major(weight):
    """The (C_out, C_in/groups, kH, kW) weight as (kH*kW, C_out, C_in/groups): one matrix per tap."""
    c_out, cin_g, kh, kw = weight.shape
    if kh * kw == 1:  # already in that order: a plain copy
        return np.array(weight.reshape(1, c_out, cin_g))
    if weight.size <= _PARALLEL_RELAYOUT:  # waking numba's threads would cost more than the copy
        return np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(kh * kw, c_out, cin_g)
    wt = np.empty((kh * kw, c_out, cin_g), weight.dtype)
    _conv.taps_first(weight, wt)
    return wt


def _shifted(x, weight, taps, bias, out, geom, groups, workspace, n_threads):
    """Run the stride-1 shifted-GEMM kernel if it fits and pays; return whether it ran."""
    if (geom.sh, geom.sw) != (1, 1) or (groups == 1 and weight.shape[1] < _SHIFTED_MIN_DEPTH):
        return False
    hp = geom.h + geom.top + geom.bottom
    wp = geom.w + geom.left + geom.right
    n_img, c_in = x.shape[:2]
    c_out = weight.shape[0]
    if taps is None:
        if geom.w_out < _SHIFTED_MIN_USEFUL_RELAYOUT * wp:
            return False
        if n_img * geom.h_out * geom.w_out < _RELAYOUT_MIN_COLUMNS * c_out:
            return False  # re-laying out the weight would cost more than im2col
    elif geom.w_out < _SHIFTED_MIN_USEFUL * wp:
        return False
    isz = x.dtype.itemsize
    # MKL runs wider products faster (OpenBLAS does not: measured), but too
    # few tasks would leave threads idle.
    wide = _blas.backend() == "mkl" and n_img * geom.h_out * wp >= 16 * n_threads * _TILE_COLUMNS
    target = 2 * _TILE_COLUMNS if wide else _TILE_COLUMNS
    band = max(1, min(geom.h_out, round(target / wp)))
    n_bands = -(-geom.h_out // band)
    m_blocks = _blocks(n_img * n_bands, c_out, n_threads)
    m_block = -(-c_out // m_blocks)
    in_place = (geom.kh, geom.kw, hp, wp) == (1, 1, geom.h, geom.w)
    band_in = 0 if in_place else c_in * (band + (geom.kh - 1) * geom.dh) * wp + (geom.kw - 1) * geom.dw
    needed = (n_threads * (band_in + m_block * band * wp) + (0 if taps is not None else weight.size)) * isz
    if needed > workspace:
        return False
    wt = tap_major(weight) if taps is None else taps  # (kH*kW, C_out, C_in/groups)
    ws_in = np.empty((n_threads, band_in), x.dtype)
    ws_out = np.empty((n_threads, m_block * band * wp), x.dtype)
    _conv.conv_shifted(_blas.address(x.dtype), x, wt, bias, out, ws_in, ws_out, groups, band, m_blocks, geom.kh,
                       geom.kw, geom.dh, geom.dw, geom.top, geom.left, wp, geom.h_out, geom.w_out, in_place)
    return True

