"""conv2d: convolution as the product of a weight operator and im2col columns.

Deep-learning "convolution" is cross-correlation (the kernel is not
flipped); ``conv2d`` follows ``torch.nn.functional.conv2d`` exactly,
including its argument names and grouped-weight layout.
"""

import contextlib
import functools

import numba
import numpy as np

from ._kernels import channels_last as _cl
from ._kernels import conv as _conv
from ._kernels import direct as _direct
from ._kernels import pixel_tile as _pixel_tile
from ._kernels import tile as _tile
from . import _blas
from ._threads import blas_single_threaded
from ._validation import as_array, as_input, geometry, integer, positive_int
from .operator import _Weight

__all__ = ["DEFAULT_WORKSPACE", "conv2d", "conv2d_method"]

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
# Depthwise convs with output planes of at most this many pixels (stride 1, or strided) run channels-last,
# vectorised over channels: there the per-plane loops' setup outweighs their work (measured 1.2-2.1x faster
# on 7x7 outputs and strided 14x14 ones; 1.25x slower on stride-1 14x14).
_DEPTHWISE_CL_MAX_PIXELS = 49
_DEPTHWISE_CL_MAX_PIXELS_STRIDED = 196
# Stride-1 grouped convs (larger than 1x1) with at most this many input and output channels per group run
# by register tiles: a GEMM call per group and tap costs more than its few multiply-adds there (measured
# 1.5-2x faster at 8 channels per group on 64ch 56x56 and 256ch 14x14; at 16, as fast or slower).
_TILE_MAX_GROUP = 8
# Ungrouped convs larger than 1x1 with at least this many input channels run by pixel tiles on a zero-padded
# copy of x; with fewer, the sum over a tap's channels is too short for the tile's per-tap setup (measured
# 1.3-2.8x slower than the GEMM paths with 3 and 8 channels). A weight not cached in the tiles' layout is
# packed on every call, a transpose of all of it at 5-8 GB/s here (1.5 ms for 512 x 512 x 3 x 3): with
# fewer output pixels than this, each weight value is used too few times to pay for it (measured 1.6-1.7x
# slower than the GEMM paths at 49 pixels, as fast at 196).
_PIXEL_TILE_MIN_CIN = 16
_PIXEL_TILE_MIN_PIXELS_PACKED = 256
# Grouped convs take the pixel tiles with at least this many input channels per group and the pixels above,
# each group's blocks packed apart: measured 1.27-1.58x faster than the per-group GEMMs of the shifted path
# at 128 and 256 channels per group (256ch 14x14 and 512ch 7x7, N = 8); 0.9-0.95x as fast at 64, 0.4-0.9x at
# 16-32 (a tile's depth, 9 x C_in/G, too short for its fixed costs), and at N = 1 (49 and 196 pixels).
_PIXEL_TILE_MIN_GROUP = 128
# Tiles of output pixels per task of the pixel-tile kernel (8 to 24 measured alike).
_PIXEL_CHUNK_TILES = 16
# Output columns per task: enough for an efficient GEMM, small enough that a
# task's im2col tile stays in the core's L2 cache.
_TILE_COLUMNS = 256
#: weights with more entries than this are re-laid out tap-major by numba's threads, smaller ones by NumPy
_PARALLEL_RELAYOUT = 1 << 18
# A conv of fewer multiply-adds than this runs on the calling thread: waking
# numba's pool and waiting for it costs a few microseconds, more than the
# second thread saves on so little arithmetic.
_SERIAL_MAX_MACS = 1 << 17
# The channels-last im2col path needs a pixel's kernel row (kW*C_in values)
# to be at least one vector long; shorter runs copy faster from NCHW rows.
_CL_MIN_RUN = 16
# Plans remembered by conv2d, per call signature; a full table is emptied.
_MAX_PLANS = 512
_plans = {}


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

    A call with C-contiguous float32 or float64 arrays of one dtype and
    plain ``int``/``str``/tuple arguments is remembered: the next call with
    the same shapes and arguments skips validation and planning;
    :func:`conv2d_method` says which kernel it runs.
    """
    key = _call_key(x, weight, bias, stride, padding, dilation, groups, workspace)
    run = _plans.get(key) if key is not None else None
    if run is None:
        run, x, weight, bias = _plan_call(x, weight, bias, stride, padding, dilation, groups, workspace)
        if key is not None:
            if len(_plans) >= _MAX_PLANS:
                _plans.clear()
            _plans[key] = run
    return run(x, weight, bias, None)


def conv2d_method(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, workspace=DEFAULT_WORKSPACE):
    """The method :func:`conv2d` takes for these arguments, as a string (nothing is convolved).

    Takes conv2d's arguments and checks them as it does.

    One of ``'pixel-tiles'`` (kernels larger than 1x1, at least 16 input
    channels, or 128 per group: register tiles of output pixels x output
    channels on a zero-padded copy of x, no GEMM), ``'shifted'``
    (stride 1: one GEMM per kernel tap on the padded input),
    ``'channels-last'`` (GEMMs on im2col tiles copied from a
    channels-last copy of x), ``'im2col'`` (GEMMs on NCHW im2col tiles),
    ``'grouped-tile'`` (stride 1, groups of at most 8 channels: register
    tiles on padded bands), ``'direct'`` (depthwise and small groups: loops
    over whole planes),
    ``'direct-phases'`` (the same, strided: each plane split into its
    stride phases), ``'depthwise-cl'`` (depthwise on small planes,
    vectorised over channels), ``'empty'`` (a zero-size output), or
    ``'operator'`` (an operator's own method: see its ``method``); a
    dense method is followed by ``', serial'`` when the call is small
    enough to run on the calling thread.
    """
    run = _plan_call(x, weight, bias, stride, padding, dilation, groups, workspace)[0]
    return getattr(run, "method", "operator")


_F32, _F64 = np.dtype(np.float32), np.dtype(np.float64)
_INTS = (int,) * 5


def _plain(value):
    """``value`` itself if it can be part of a plan's key (an exact int, str or tuple of ints), else None.

    Exact types only: ``True == 1`` and ``1.0 == 1`` hash alike, but only the
    int is accepted, so they must take the validating path.
    """
    kind = type(value)
    if kind is int or kind is str:
        return value
    if kind is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int:
        return value
    return None


def _call_key(x, weight, bias, stride, padding, dilation, groups, workspace):
    """The key conv2d remembers a plan under, or None where the arguments need converting or checking."""
    if type(x) is not np.ndarray or type(weight) is not np.ndarray:
        return None
    dtype = x.dtype
    if (dtype is not _F32 and dtype is not _F64) or weight.dtype is not dtype:
        return None
    if not (x.flags.c_contiguous and weight.flags.c_contiguous):
        return None
    if bias is None:
        b_shape = None
    elif type(bias) is np.ndarray and bias.dtype is dtype and bias.flags.c_contiguous:
        b_shape = bias.shape
    else:
        return None
    args = (stride, padding, dilation, groups, workspace)
    if tuple(map(type, args)) != _INTS:  # the common case, all ints, checked at once
        args = (_plain(stride), _plain(padding), _plain(dilation), _plain(groups), _plain(workspace))
        if None in args or type(groups) is not int or type(workspace) is not int:
            return None
    return (x.shape, weight.shape, b_shape, dtype.char, args, numba.get_num_threads())


def _plan_call(x, weight, bias, stride, padding, dilation, groups, workspace):
    """Validate and convert conv2d's arguments; return (run, x, weight, bias), run(x, weight, bias, layout) -> y."""
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
    workspace = int(integer(workspace, "workspace", 1, note=" (bytes)"))
    if isinstance(weight, _Weight):
        op = weight
        return (lambda x, weight, bias, layout: op._conv2d(x, geom, bias, workspace)), x, op, bias
    weight = np.ascontiguousarray(weight, dtype=x.dtype)
    run = _dense_plan(x.shape, x.dtype, weight.shape, geom, int(groups), workspace, False, numba.get_num_threads())
    return run, x, weight, bias


def dense_conv2d(x, weight, bias, geom, groups, workspace, layout=None):
    """Validated driver of the dense kernels: runs the plan for these shapes (made once, then remembered).

    ``layout(kind, make)``, if given, returns ``make(weight)`` kept from an
    earlier call (an operator's cache): the weight in a kernel's own layout,
    :func:`tap_major` or :func:`channels_last_weight`, then is not re-laid
    out per call.
    """
    run = _dense_plan(x.shape, x.dtype, weight.shape, geom, groups, workspace, layout is not None,
                      numba.get_num_threads())
    return run(x, weight, bias, layout)


@functools.lru_cache(maxsize=_MAX_PLANS)
def _dense_plan(x_shape, dtype, w_shape, geom, groups, workspace, cached, n_threads):
    """run(x, weight, bias, layout) -> y for these shapes: the kernel, its tiling and workspace, chosen once.

    Everything here depends on shapes and arguments only, never on values,
    so one plan serves every call with the same ones.
    """
    n_img, c_in = x_shape[:2]
    c_out, cin_g = w_shape[:2]
    out_shape = (n_img, c_out, geom.h_out, geom.w_out)
    p_img = geom.h_out * geom.w_out
    if n_img * c_out * p_img == 0 or c_in == 0:
        def run(x, weight, bias, layout):
            out = np.zeros(out_shape, dtype)
            return out if bias is None else out + bias[None, :, None, None]
        run.method = "empty"
        return run
    kk = geom.kh * geom.kw
    serial = n_threads == 1 or n_img * c_out * p_img * cin_g * kk < _SERIAL_MAX_MACS
    small = p_img <= (_DEPTHWISE_CL_MAX_PIXELS if (geom.sh, geom.sw) == (1, 1) else _DEPTHWISE_CL_MAX_PIXELS_STRIDED)
    x_bytes = int(np.prod(x_shape)) * dtype.itemsize  # the channels-last copy
    if groups == c_in == c_out and small and x_bytes <= workspace:
        run = _depthwise_cl_plan(out_shape, dtype, geom, serial)
    elif groups > 1 and (cin_g == 1 or (kk > 1 and cin_g * kk <= _DIRECT_MAX_DEPTH)):
        run = _direct_plan(out_shape, dtype, geom, groups, serial)
    else:
        slabs = 1 if serial else n_threads  # workspace slabs: one per thread that runs tasks
        run = (_grouped_tile_plan(x_shape, dtype, w_shape, geom, groups, workspace, serial, slabs)
               or _pixel_tile_plan(x_shape, dtype, w_shape, geom, groups, workspace, cached, serial, slabs)
               or _shifted_plan(x_shape, dtype, w_shape, geom, groups, workspace, cached, serial, slabs)
               or _channels_last_plan(x_shape, dtype, w_shape, geom, groups, workspace, cached, serial, slabs)
               or _im2col_plan(x_shape, dtype, w_shape, geom, groups, workspace, serial, slabs))
    run.method += ", serial" if serial else ""
    return run


def _depthwise_cl_plan(out_shape, dtype, geom, serial):
    """Depthwise on small planes: channels-last, vectorised over channels."""
    n_img, c = out_shape[:2]
    zeros = np.zeros(c, dtype)  # the bias of a call without one; never written
    args = (geom.kh, geom.kw, geom.sh, geom.sw, geom.top, geom.left, geom.dh, geom.dw, serial)

    def run(x, weight, bias, layout):
        x_cl = np.empty((n_img, geom.h, geom.w, c), dtype)  # (N, H, W, C)
        _cl.to_channels_last(x, x_cl, serial)
        w_t = np.ascontiguousarray(weight.reshape(c, -1).T)  # (kH*kW, C)
        out = np.empty(out_shape, dtype)
        _cl.depthwise_cl(x_cl, w_t, zeros if bias is None else bias, out, *args)
        return out
    run.method = "depthwise-cl"
    return run


def _direct_plan(out_shape, dtype, geom, groups, serial):
    """Depthwise and small groups: direct loops over whole (phase) planes."""
    zeros = np.zeros(out_shape[1], dtype)  # the bias of a call without one; never written
    if (geom.sh, geom.sw) == (1, 1):
        kernel, method = _conv.conv_direct_shifted, "direct"
        args = (groups, geom.kh, geom.kw, geom.top, geom.left, geom.h + geom.top + geom.bottom,
                geom.w + geom.left + geom.right, geom.dh, geom.dw, serial)
    else:
        kernel, method = _conv.conv_direct_phases, "direct-phases"
        # each phase plane covers the output rows/columns plus the farthest tap's shift
        hq = geom.h_out + (geom.kh - 1) * geom.dh // geom.sh
        wq = geom.w_out + (geom.kw - 1) * geom.dw // geom.sw
        args = (groups, geom.kh, geom.kw, geom.sh, geom.sw, geom.top, geom.left, geom.dh, geom.dw, hq, wq, serial)

    def run(x, weight, bias, layout):
        out = np.empty(out_shape, dtype)
        kernel(x, weight, zeros if bias is None else bias, out, *args)
        return out
    run.method = method
    return run


def _gemm_run(kernel, fn, out_shape, dtype, ws_shapes, args, serial, weight_arg):
    """run(x, weight, bias, layout) of a GEMM kernel: allocates the output and the per-thread slabs, calls it.

    ``weight_arg(weight, layout)`` is the weight in the kernel's layout. A
    serial call leaves BLAS as it is: the products are then too small for
    OpenBLAS to use its threads.
    """
    n_img, c_out, h_out, w_out = out_shape
    zeros = np.zeros(c_out, dtype)  # the bias of a call without one; never written
    limit = contextlib.nullcontext if serial else blas_single_threaded

    def run(x, weight, bias, layout):
        out = np.empty((n_img, c_out, h_out * w_out), dtype)  # (N, C_out, H_out*W_out)
        ws = [np.empty(shape, dtype) for shape in ws_shapes]
        with limit():
            kernel(fn, x, weight_arg(weight, layout), zeros if bias is None else bias, out, *ws, *args)
        return out.reshape(out_shape)
    return run


def _blocks(n_units, c_out, n_threads):
    """How many output-channel blocks to cut each unit of work into so every thread has some."""
    if n_units >= n_threads:
        return 1
    return min(c_out, -(-n_threads // n_units))


def _tiling(n_img, p_img, c_out, slabs):
    """(tile, per_img, m_blocks, m_block): output columns per task, tiles per image (0: tiles cut the flat N*P
    columns), output-channel blocks, for ``slabs`` threads. Images of at least one tile get tiles of their own,
    so that each task's product is written straight into the output."""
    if p_img >= _TILE_COLUMNS:
        per_img = -(-p_img // _TILE_COLUMNS)
        while n_img * per_img >= slabs and (n_img * per_img) % slabs:
            per_img += 1  # a whole number of rounds
        n_tiles = n_img * per_img
        tile = -(-p_img // per_img)
    else:
        per_img = 0
        n_tiles = -(-n_img * p_img // _TILE_COLUMNS)
        if n_tiles >= slabs:
            n_tiles = -(-n_tiles // slabs) * slabs  # a whole number of rounds
        tile = -(-n_img * p_img // n_tiles)
    m_blocks = _blocks(n_tiles, c_out, slabs)
    return tile, per_img, m_blocks, -(-c_out // m_blocks)


def _im2col_plan(x_shape, dtype, w_shape, geom, groups, workspace, serial, slabs):
    n_img, c_in = x_shape[:2]
    c_out = w_shape[0]
    k = c_in * geom.kh * geom.kw
    tile, per_img, m_blocks, m_block = _tiling(n_img, geom.h_out * geom.w_out, c_out, slabs)
    per_col = slabs * (k + m_block) * dtype.itemsize
    if tile * per_col > workspace:
        tile, per_img = workspace // per_col, 0
        if tile < 1:
            raise ValueError(
                f"workspace={workspace} bytes is too small for this layer; it needs at least {per_col}"
            )
    run = _gemm_run(_conv.conv_im2col, _blas.address(dtype), (n_img, c_out, geom.h_out, geom.w_out), dtype,
                    ((slabs, k * tile), (slabs, m_block * tile)),
                    (groups, tile, per_img, m_blocks, *geom.kernel_args, serial), serial,
                    lambda weight, layout: weight.reshape(c_out, -1))
    run.method = "im2col"
    return run


def tap_major(weight):
    """The (C_out, C_in/groups, kH, kW) weight as (kH*kW, C_out, C_in/groups): one matrix per tap."""
    c_out, cin_g, kh, kw = weight.shape
    if kh * kw == 1:  # already in that order: a plain copy
        return np.array(weight.reshape(1, c_out, cin_g))
    if weight.size <= _PARALLEL_RELAYOUT:  # waking numba's threads would cost more than the copy
        return np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(kh * kw, c_out, cin_g)
    wt = np.empty((kh * kw, c_out, cin_g), weight.dtype)
    _conv.taps_first(np.ascontiguousarray(weight), wt)
    return wt


def channels_last_weight(weight):
    """The (C_out, C_in, kH, kW) weight as (C_out, kH*kW*C_in), columns in (i, j, c) order: the channels-last layout."""
    c_out = weight.shape[0]
    return np.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(c_out, -1)


def _in_layout(kind, make):
    """weight_arg(weight, layout) for a kernel that takes the weight as ``make(weight)``."""
    def weight_arg(weight, layout):
        return make(weight) if layout is None else layout(kind, make)
    return weight_arg


def _taps_view(weight):
    """tap_major for a weight used only during the call: a 1x1 weight already is in that order (a view)."""
    c_out, cin_g, kh, kw = weight.shape
    return weight.reshape(1, c_out, cin_g) if kh * kw == 1 else tap_major(weight)


def _taps(weight, layout):
    return _taps_view(weight) if layout is None else layout("taps", tap_major)


def _shifted_plan(x_shape, dtype, w_shape, geom, groups, workspace, cached, serial, slabs):
    """The stride-1 shifted-GEMM kernel's run, if it fits the workspace and pays; else None."""
    if (geom.sh, geom.sw) != (1, 1) or (groups == 1 and w_shape[1] < _SHIFTED_MIN_DEPTH):
        return None
    hp = geom.h + geom.top + geom.bottom
    wp = geom.w + geom.left + geom.right
    n_img, c_in = x_shape[:2]
    c_out = w_shape[0]
    if not cached:
        if geom.w_out < _SHIFTED_MIN_USEFUL_RELAYOUT * wp:
            return None
        if n_img * geom.h_out * geom.w_out < _RELAYOUT_MIN_COLUMNS * c_out:
            return None  # re-laying out the weight would cost more than im2col
    elif geom.w_out < _SHIFTED_MIN_USEFUL * wp:
        return None
    # MKL runs wider products faster (OpenBLAS does not: measured), but too
    # few tasks would leave threads idle.
    wide = _blas.backend() == "mkl" and n_img * geom.h_out * wp >= 16 * slabs * _TILE_COLUMNS
    target = 2 * _TILE_COLUMNS if wide else _TILE_COLUMNS
    band = max(1, min(geom.h_out, round(target / wp)))
    n_bands = -(-geom.h_out // band)
    m_blocks = _blocks(n_img * n_bands, c_out, slabs)
    m_block = -(-c_out // m_blocks)
    in_place = (geom.kh, geom.kw, hp, wp) == (1, 1, geom.h, geom.w)
    band_in = 0 if in_place else c_in * (band + (geom.kh - 1) * geom.dh) * wp + (geom.kw - 1) * geom.dw
    band_out = 0 if in_place else m_block * band * wp  # in place, the GEMMs write the output itself
    relayout = 0 if cached or geom.kh * geom.kw == 1 else int(np.prod(w_shape))
    if (slabs * (band_in + band_out) + relayout) * dtype.itemsize > workspace:
        return None
    run = _gemm_run(_conv.conv_shifted, _blas.address(dtype), (n_img, c_out, geom.h_out, geom.w_out), dtype,
                    ((slabs, band_in), (slabs, band_out)),
                    (groups, band, m_blocks, geom.kh, geom.kw, geom.dh, geom.dw, geom.top, geom.left, wp,
                     geom.h_out, geom.w_out, in_place, serial), serial, _taps)
    run.method = "shifted"
    return run


def _channels_last_plan(x_shape, dtype, w_shape, geom, groups, workspace, cached, serial, slabs):
    """The channels-last im2col kernel's run, where it pays; else None.

    It pays where kernel row i of a pixel's receptive field is a run of
    at least one vector (kW*C_in >= 16 values) and kernel taps are more than
    one (a strided 1x1 conv would transpose all of x to read a fraction of
    it). The weight is re-laid out (i, j, c) where it is cached or no larger
    than the tiles (fewer output channels than output pixels); else the
    tiles follow its own order.
    """
    n_img, c_in, height, width = x_shape
    c_out = w_shape[0]
    kk = geom.kh * geom.kw
    if groups != 1 or kk == 1 or geom.kw * c_in < _CL_MIN_RUN:
        return None
    total = n_img * geom.h_out * geom.w_out
    taps_first = cached or c_out <= total
    k = c_in * kk
    tile, per_img, m_blocks, m_block = _tiling(n_img, geom.h_out * geom.w_out, c_out, slabs)
    relayout = c_out * k if taps_first and not cached else 0
    if (slabs * (k + m_block) * tile + n_img * c_in * height * width + relayout) * dtype.itemsize > workspace:
        return None
    weight_arg = (_in_layout("channels_last", channels_last_weight) if taps_first
                  else lambda weight, layout: weight.reshape(c_out, -1))
    run = _gemm_run(functools.partial(_cl_conv, serial=serial), _blas.address(dtype),
                    (n_img, c_out, geom.h_out, geom.w_out), dtype, ((slabs, k * tile), (slabs, m_block * tile)),
                    (tile, per_img, m_blocks, *geom.kernel_args, taps_first, serial), serial, weight_arg)
    run.method = "channels-last"
    return run


def _cl_conv(fn, x, w_cl, bias, out, ws_cols, ws_out, *args, serial):
    """The channels-last kernel on a transposed copy of x."""
    x_cl = np.empty((x.shape[0], x.shape[2], x.shape[3], x.shape[1]), x.dtype)  # (N, H, W, C_in)
    _cl.to_channels_last(x, x_cl, serial)
    _cl.conv_im2col_cl(fn, x_cl, w_cl, bias, out, ws_cols, ws_out, *args)


def padded_group_weight(weight, groups):
    """The grouped (C_out, C_in/G, kH, kW) weight as (G*Mp, C_in/G*kH*kW): each group's C_out/G rows, then zero
    rows up to Mp, a multiple of the register tile's rows (the layout of :func:`_conv.conv_grouped_tile`)."""
    c_out = weight.shape[0]
    cout_g = c_out // groups
    mp = -(-cout_g // _tile.TILE_ROWS) * _tile.TILE_ROWS
    padded = np.zeros((groups, mp, weight[0].size), weight.dtype)
    padded[:, :cout_g] = weight.reshape(groups, cout_g, -1)
    return padded.reshape(groups * mp, -1)


def _grouped_tile_plan(x_shape, dtype, w_shape, geom, groups, workspace, serial, slabs):
    """Stride-1 grouped convs of narrow groups by register tiles on padded bands; else None."""
    n_img, c_in, height, width = x_shape
    c_out, cin_g = w_shape[:2]
    cout_g = c_out // groups
    kk = geom.kh * geom.kw
    if (geom.sh, geom.sw) != (1, 1) or groups == 1 or kk == 1 or max(cin_g, cout_g) > _TILE_MAX_GROUP:
        return None  # (1x1 groups: the shifted kernel's GEMMs write the output in place)
    wp = geom.w + geom.left + geom.right
    span = (geom.kh - 1) * geom.dh
    band = max(1, min(geom.h_out, round(_TILE_COLUMNS / wp)))
    while band > max(1, 2 * span) and n_img * -(-geom.h_out // band) < 4 * slabs:
        band = (band + 1) // 2  # enough tasks to balance the threads, but bands deeper than the rows they pad
    mp = -(-cout_g // _tile.TILE_ROWS) * _tile.TILE_ROWS
    widest = max(_tile.tile_cols(path, dtype) for path in _tile.FLOAT_PATHS)

    def sizes(cols):
        band_in = c_in * (band + span) * wp + (geom.kw - 1) * geom.dw + cols
        return band_in, groups * mp * (-(-band * wp // cols) * cols)
    if slabs * sum(sizes(widest)) * dtype.itemsize > workspace:
        return None
    args = (groups, band, geom.kh, geom.kw, geom.dh, geom.dw, geom.top, geom.left, wp, serial)
    zeros = np.zeros(c_out, dtype)  # the bias of a call without one; never written
    out_shape = (n_img, c_out, geom.h_out, geom.w_out)
    weight_arg = _in_layout("grouped_tile", functools.partial(padded_group_weight, groups=groups))

    def run(x, weight, bias, layout):
        path = _tile.float_path()  # read per call: SPARSECONV_ISA may change between calls
        cols = _tile.tile_cols(path, dtype)
        ws = [np.empty((slabs, size), dtype) for size in sizes(cols)]
        out = np.empty(out_shape, dtype)
        _conv.conv_grouped_tile(_tile.MARKER[path](0), cols, x, weight_arg(weight, layout),
                                zeros if bias is None else bias, out, *ws, *args)
        return out
    run.method = "grouped-tile"
    return run


def pixel_tile_weight(weight, width, groups=1):
    """The (C_out, C_in/G, kH, kW) weight packed for :func:`_direct.conv_pixel_tiles`: (G*nb*K, width).

    Each group's C_out/G output channels in nb = ceil(C_out/G / width)
    blocks of ``width`` (zeros past the group's last), each block as
    K = kH*kW*C_in/G rows in (i, j, c) order: row (i*kW + j)*C_in/G + c of
    block b of group g is weight[g*C_out/G + b*width + o, c, i, j] in column o.
    """
    weight = np.ascontiguousarray(weight)
    cout_g = weight.shape[0] // groups
    per_group = -(-cout_g // width)
    k = weight[0].size
    wpk = np.empty((groups * per_group * k, width), weight.dtype)  # (G*nb*K, B)
    serial = weight.size < _PARALLEL_RELAYOUT
    for g in range(groups):
        _direct.pack_weight(weight[g * cout_g:(g + 1) * cout_g], wpk[g * per_group * k:(g + 1) * per_group * k],
                            serial)
    return wpk


def _pixel_tile_plan(x_shape, dtype, w_shape, geom, groups, workspace, cached, serial, slabs):
    """Convs larger than 1x1 by pixel tiles on a zero-padded copy of x (ungrouped, or wide groups); else None."""
    n_img, c_in, height, width = x_shape
    c_out, cin_g = w_shape[:2]
    cout_g = c_out // groups
    p_img = geom.h_out * geom.w_out
    total = n_img * p_img
    if geom.kh * geom.kw == 1 or cin_g < (_PIXEL_TILE_MIN_CIN if groups == 1 else _PIXEL_TILE_MIN_GROUP):
        return None
    if (groups > 1 or not cached) and total < _PIXEL_TILE_MIN_PIXELS_PACKED:
        return None
    hp = height + geom.top + geom.bottom
    wp = width + geom.left + geom.right
    widest = max(_pixel_tile.block_channels(path, dtype) for path in _pixel_tile.PIXELS)
    most = max(_pixel_tile.PIXELS.values())
    chunk_max = _PIXEL_CHUNK_TILES * most
    tables = (total + most) * 8 + geom.kh * geom.kw * 8  # pix and koff, int64
    relayout = 0 if cached else groups * -(-cout_g // widest) * widest * cin_g * geom.kh * geom.kw
    need = (n_img * hp * wp * c_in + slabs * widest * (most + chunk_max) + relayout) * dtype.itemsize + tables
    if need > workspace:
        return None
    koff = np.array([i * geom.dh * wp + j * geom.dw for i in range(geom.kh) for j in range(geom.kw)], np.int64)
    q = np.arange(total)  # output pixel q = (n*H_out + h)*W_out + w
    img, rest = np.divmod(q, p_img)
    oh, ow = np.divmod(rest, geom.w_out)
    starts = (img * c_in * hp + oh * geom.sh) * wp + ow * geom.sw  # where pixel q's receptive field starts in xp
    zeros = np.zeros(c_out, dtype)  # the bias of a call without one; never written
    out_shape = (n_img, c_out, geom.h_out, geom.w_out)

    @functools.lru_cache(maxsize=len(_pixel_tile.PIXELS))
    def tiling(path):
        """(pix, chunk, width) on ``path``: pix padded to whole tiles, chunk in pixels, the channel block."""
        pixels = _pixel_tile.PIXELS[path]
        n_tiles = -(-total // pixels)
        pix = np.empty(n_tiles * pixels, np.int64)
        pix[:total] = starts
        pix[total:] = starts[-1]
        block = _pixel_tile.block_channels(path, dtype)
        n_blocks = groups * -(-cout_g // block)
        n_chunks = -(-n_tiles // _PIXEL_CHUNK_TILES)
        if not serial:
            n_chunks = max(n_chunks, -(-2 * slabs // n_blocks))  # every thread has work
            while (n_chunks * n_blocks) % slabs and n_chunks < n_tiles:
                n_chunks += 1  # a whole number of rounds
        return pix, -(-n_tiles // n_chunks) * pixels, block

    def run(x, weight, bias, layout):
        path = _tile.float_path()  # read per call: SPARSECONV_ISA may change between calls
        pix, chunk, block = tiling(path)
        kind = f"pixel_tiles{block}" + (f"g{groups}" if groups > 1 else "")
        make = functools.partial(pixel_tile_weight, width=block, groups=groups)
        wpk = make(weight) if layout is None else layout(kind, make)
        xp = np.empty((n_img, c_in, hp, wp), dtype)  # (N, C_in, H_p, W_p)
        _direct.pad_planes(x, xp, geom.top, geom.left, serial)
        out = np.empty((n_img, c_out, p_img), dtype)  # (N, C_out, H_out*W_out)
        _direct.conv_pixel_tiles(_tile.MARKER[path](0), _pixel_tile.PIXELS[path], xp, wpk,
                                 zeros if bias is None else bias, out, pix, koff,
                                 np.empty((slabs, _pixel_tile.PIXELS[path] * block), dtype),
                                 np.empty((slabs, block * chunk), dtype), chunk, groups, serial)
        return out.reshape(out_shape)
    run.method = "pixel-tiles"
    return run
