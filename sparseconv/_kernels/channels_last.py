"""The im2col GEMM on a channels-last copy of the input: long contiguous copies for strided and small-depth convs.

In NCHW, a row (c, i, j) of the im2col matrix gathers one input value per
output pixel: with a stride every other value, in runs no longer than an
output row. In a channels-last (N, H, W, C_in) copy of x, the receptive
field of output pixel (h, w) in kernel row i is one contiguous run of
kW*C_in values, ``x_cl[n, h*sH + i*dH - pH, w*sW - pW:][:kW]`` (dilation 1,
inside the image), whatever the stride. So the tile is built transposed —
one row per output pixel, columns ordered (i, j, c) — from kH runs per
pixel, and multiplied as ``W_cl @ tile^T`` with ``W_cl[o, (i*kW + j)*C_in + c]
= W[o, c, i, j]`` (a GEMM with its second operand transposed, which BLAS
packs as cheaply). The price is one transposing copy of x up front. Where
re-laying the weight out would cost more than the tiles, the tile's columns
follow the weight's own (c, i, j) order instead, each tap's values stored
kH*kW apart.
"""

import numba
import numpy as np

from .. import _blas
from .._config import PARALLEL, SERIAL, jit
from .conv import _fill, _finish, _n_tiles, _product_target, _tile_columns


@jit(**PARALLEL)
def to_channels_last(x, out, serial):
    """out[n, h, w, c] = x[n, c, h, w]; one (C, W) -> (W, C) transpose per input row, in cache."""
    if serial:
        for row in range(x.shape[0] * x.shape[2]):
            _transpose_row(x, out, row)
    else:
        for row in numba.prange(x.shape[0] * x.shape[2]):
            _transpose_row(x, out, row)


@jit(**SERIAL)
def _transpose_row(x, out, row):
    c_in, height, width = x.shape[1], x.shape[2], x.shape[3]
    n = row // height
    h = row - n * height
    dst = out[n, h]
    for c in range(c_in):
        src = x[n, c, h]
        for w in range(width):
            dst[w, c] = src[w]


@jit(**SERIAL)
def _pixel_rows(x_cl, tile, q0, q1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out):
    """tile[q - q0, (i*kW + j)*C + c] = x_pad[n, c, h*sH + i*dH, w*sW + j*dW] for output pixels q0..q1-1.

    q = (n*h_out + h)*w_out + w; tile is (q1 - q0, kH*kW*C) flat, row-major.
    """
    height, width, c_in = x_cl.shape[1], x_cl.shape[2], x_cl.shape[3]
    flat = x_cl.ravel()
    run = kw * c_in
    k = kh * run
    p_img = h_out * w_out
    n = q0 // p_img
    oh = (q0 - n * p_img) // w_out
    ow = q0 - n * p_img - oh * w_out
    for t in range(q1 - q0):
        iw0 = ow * sw - pw
        whole = dw == 1 and iw0 >= 0 and iw0 + kw <= width
        for i in range(kh):
            dst = tile[t * k + i * run:t * k + (i + 1) * run]
            ih = oh * sh + i * dh - ph
            if ih < 0 or ih >= height:
                _fill(dst, 0)
                continue
            row = ((n * height + ih) * width) * c_in  # where input row ih of image n starts in flat
            if whole:
                src = flat[row + iw0 * c_in:row + iw0 * c_in + run]
                for e in range(run):
                    dst[e] = src[e]
                continue
            for j in range(kw):
                iw = iw0 + j * dw
                part = dst[j * c_in:(j + 1) * c_in]
                if iw < 0 or iw >= width:
                    _fill(part, 0)
                else:
                    src = flat[row + iw * c_in:row + (iw + 1) * c_in]
                    for c in range(c_in):
                        part[c] = src[c]
        ow += 1
        if ow == w_out:
            ow = 0
            oh += 1
            if oh == h_out:
                oh = 0
                n += 1


@jit(**SERIAL)
def _pixel_rows_cij(x_cl, tile, q0, q1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out):
    """As :func:`_pixel_rows` with the columns in the weight's own (c, i, j) order: tile[t, c*kH*kW + i*kW + j].

    Each tap's C_in values are stored kH*kW apart, which costs more than
    contiguous runs but leaves the weight as it is (worth it where the
    weight is larger than the tiles).
    """
    height, width, c_in = x_cl.shape[1], x_cl.shape[2], x_cl.shape[3]
    flat = x_cl.ravel()
    kk = kh * kw
    k = kk * c_in
    p_img = h_out * w_out
    n = q0 // p_img
    oh = (q0 - n * p_img) // w_out
    ow = q0 - n * p_img - oh * w_out
    for t in range(q1 - q0):
        dst = tile[t * k:(t + 1) * k]
        for i in range(kh):
            ih = oh * sh + i * dh - ph
            for j in range(kw):
                iw = ow * sw + j * dw - pw
                part = dst[i * kw + j:]
                if ih < 0 or ih >= height or iw < 0 or iw >= width:
                    for c in range(c_in):
                        part[c * kk] = 0
                else:
                    src = flat[((n * height + ih) * width + iw) * c_in:]
                    for c in range(c_in):
                        part[c * kk] = src[c]
        ow += 1
        if ow == w_out:
            ow = 0
            oh += 1
            if oh == h_out:
                oh = 0
                n += 1


@jit(**PARALLEL)
def conv_im2col_cl(fn, x_cl, w_cl, bias, out, ws_cols, ws_out, tile, per_img, m_blocks,
                   kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out, taps_first, serial):
    """out (N, C_out, P) = conv of x_cl (N, H, W, C_in) by w_cl (C_out, kH*kW*C_in), groups=1, + bias.

    ``w_cl``'s columns are in (i, j, c) order with ``taps_first``, else in
    the weight's own (c, i, j) order. Tasks are (tile of output pixels,
    block of output channels), as in
    :func:`sparseconv._kernels.conv.conv_im2col` (``per_img`` too); ws_cols (n_threads, >=
    tile*kH*kW*C_in) and ws_out (n_threads, >= m_block*tile) are one slab
    per thread. ``serial`` runs every task on the calling thread, in slab 0.
    """
    args = (fn, x_cl, w_cl, bias, out, tile, per_img, m_blocks, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out,
            taps_first)
    n_tasks = _n_tiles(x_cl.shape[0], h_out * w_out, tile, per_img) * m_blocks
    if serial:
        for task in range(n_tasks):
            _cl_task(task, ws_cols[0], ws_out[0], args)
    else:
        for task in numba.prange(n_tasks):
            thread = numba.get_thread_id()
            _cl_task(task, ws_cols[thread], ws_out[thread], args)


@jit(**SERIAL)
def _cl_task(task, cols, res, args):
    fn, x_cl, w_cl, bias, out, tile, per_img, m_blocks, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out, taps_first = args
    c_out, k = w_cl.shape
    total = x_cl.shape[0] * h_out * w_out
    m_block = (c_out + m_blocks - 1) // m_blocks
    tile_i = task // m_blocks
    m0 = (task - tile_i * m_blocks) * m_block
    m1 = min(m0 + m_block, c_out)
    if m0 >= m1:
        return
    q0, q1 = _tile_columns(tile_i, tile, per_img, h_out * w_out, total)
    if taps_first:
        _pixel_rows(x_cl, cols, q0, q1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)
    else:
        _pixel_rows_cij(x_cl, cols, q0, q1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)
    target, ld, direct = _product_target(out, res, m0, q0, q1)
    _blas.gemm_nt(fn, m1 - m0, q1 - q0, k, w_cl.ravel()[m0 * k:], k, cols, k, target, ld, 0.0)
    _finish(out, res, bias, m0, m1, q0, q1, direct)


@jit(**PARALLEL)
def depthwise_cl(x_cl, w_t, bias, out, kh, kw, sh, sw, top, left, dh, dw, serial):
    """out (N, C, H_out, W_out) = depthwise conv of x_cl (N, H, W, C) by w_t (kH*kW, C) + bias.

    Per output row (image, h): every output pixel is C independent sums, so
    each tap adds one contiguous C-long product of a weight row and an input
    pixel's channels (vectorised over channels, not over a small plane's
    few columns); the row's (W_out, C) block is then written to NCHW.
    ``serial`` runs every row on the calling thread.
    """
    n_rows = x_cl.shape[0] * out.shape[2]
    args = (x_cl, w_t, bias, out, kh, kw, sh, sw, top, left, dh, dw)
    if serial:
        for row in range(n_rows):
            _depthwise_row(row, args)
    else:
        for row in numba.prange(n_rows):
            _depthwise_row(row, args)


@jit(**SERIAL)
def _depthwise_row(row, args):
    x_cl, w_t, bias, out, kh, kw, sh, sw, top, left, dh, dw = args
    height, width, c_in = x_cl.shape[1], x_cl.shape[2], x_cl.shape[3]
    h_out, w_out = out.shape[2], out.shape[3]
    n = row // h_out
    oh = row - n * h_out
    acc = np.empty((w_out, c_in), out.dtype)  # (W_out, C)
    for ow in range(w_out):
        dst = acc[ow]
        for c in range(c_in):
            dst[c] = bias[c]
        for i in range(kh):
            ih = oh * sh + i * dh - top
            if ih < 0 or ih >= height:
                continue
            for j in range(kw):
                iw = ow * sw + j * dw - left
                if iw < 0 or iw >= width:
                    continue
                src = x_cl[n, ih, iw]
                wv = w_t[i * kw + j]
                for c in range(c_in):
                    dst[c] += wv[c] * src[c]
    for c in range(c_in):
        dst = out[n, c, oh]
        for ow in range(w_out):
            dst[ow] = acc[ow, c]
