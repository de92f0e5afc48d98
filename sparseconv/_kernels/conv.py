"""Dense convolution kernels: GEMMs on im2col tiles, or on shifted views; direct loops and register tiles
where groups are too small for a GEMM (``conv_direct_shifted``, ``conv_direct_phases``,
``conv_grouped_tile``).

Two ways to feed a GEMM with the im2col matrix without building all of it
(a third, on a channels-last copy of x, is in :mod:`.channels_last`):

``conv_im2col``
    Work is cut into tasks = (tile of output columns) x (block of output
    channels). Per task, a thread fills the tile's columns (only for the
    input channels its output block reads), multiplies them by the weight
    rows with a single-threaded GEMM per group, and writes the result into
    the NCHW output (straight from the GEMM where the tile lies in one
    image). The tile stays in the core's cache between the two steps. Any
    stride.

``conv_shifted`` (stride 1)
    With the input zero-padded to (H_p, W_p) and laid out flat per channel,
    row (c, i, j) of the im2col matrix, restricted to the output rows
    oh0..oh1 and computed on the *padded* width W_p, is the contiguous run
    ``x_pad[c, (oh0 + i*dH)*W_p + j*dW :][:rows*W_p]``. So the product is
    the sum over taps (i, j) of W[:, :, i, j] @ (a strided view of x_pad):
    kH*kW GEMMs of depth C_in/groups that read the padded input in place.
    Each task pads just the input rows of its band, into a buffer that stays
    in cache: a copy of about the input's size in all, where im2col copies
    kH*kW times it. The price is W_p - W_out wasted columns per output row,
    computed and dropped. (Alternatives measured here: padding the whole
    input up front, about as fast; folding a kernel row's kW taps into one
    deeper GEMM over kW shifted copies, 1.3-1.6x slower; copying each task's
    im2col tile out of the padded input, as contiguous runs, for one
    full-depth GEMM, 1.1-1.6x slower.)

Both run in numba's thread pool only; the caller limits BLAS to one thread,
so the two runtimes never compete for the cores. Each thread works in the
workspace slab of its ``numba.get_thread_id()``. A task is a function of its
own (``_*_task``, ``_*_block``) so that each kernel can also run all of them
on the calling thread (``serial``): for a layer of a few thousand
multiply-adds, waking the thread pool costs more than the arithmetic.
"""

import numba
import numpy as np

from .. import _blas
from .._config import PARALLEL, SERIAL, jit
from .im2col import im2col_tile
from .tile import TILE_ROWS, float_tile


@jit(**SERIAL)
def _add(dst, src, b):
    """dst[:] = src[:len(dst)] + b. Indices from 0 through slices: no wraparound, so it vectorises."""
    for k in range(dst.size):
        dst[k] = src[k] + b


@jit(**SERIAL)
def _fill(dst, value):
    for k in range(dst.size):
        dst[k] = value


@jit(**SERIAL)
def _pad_band(x, n, c0, c1, oh0, in_rows, top, left, wp, buf):
    """buf[c - c0, r, :] = input row oh0 + r - top of channel c of image n, zero-padded to width wp.

    Channels c0..c1-1, rows 0..in_rows-1, laid out (channel, row, wp) flat;
    rows outside the image are zeros.
    """
    height, width = x.shape[2], x.shape[3]
    plane = in_rows * wp
    for c in range(c0, c1):
        for r in range(in_rows):
            dst = (c - c0) * plane + r * wp
            ih = oh0 + r - top
            if ih < 0 or ih >= height:
                _fill(buf[dst:dst + wp], 0)
            else:
                _fill(buf[dst:dst + left], 0)
                _add(buf[dst + left:dst + left + width], x[n, c, ih], 0)
                _fill(buf[dst + left + width:dst + wp], 0)


@jit(**SERIAL)
def _scatter(res, ld, out, bias, m0, m1, q0, q1, p_img):
    """out[n, m, p] = res[m - m0, q - q0] + bias[m] for columns q = n*p_img + p in [q0, q1)."""
    q = q0
    while q < q1:
        n = q // p_img
        p = q - n * p_img
        seg = min(p_img - p, q1 - q)
        for m in range(m0, m1):
            _add(out[n, m, p:p + seg], res[(m - m0) * ld + q - q0:], bias[m])
        q += seg


@jit(**SERIAL)
def _n_tiles(n_img, p_img, tile, per_img):
    return n_img * per_img if per_img > 0 else (n_img * p_img + tile - 1) // tile


@jit(**SERIAL)
def _tile_columns(tile_i, tile, per_img, p_img, total):
    """Columns [q0, q1) of tile ``tile_i``: with per_img > 0 each image has its own per_img tiles, none spans
    two images; else tiles cut the flat range of all N*P columns."""
    if per_img > 0:
        n = tile_i // per_img
        q0 = n * p_img + (tile_i - n * per_img) * tile
        return q0, min(q0 + tile, (n + 1) * p_img)
    q0 = tile_i * tile
    return q0, min(q0 + tile, total)


@jit(**SERIAL)
def _product_target(out, res, m0, q0, q1):
    """(buffer, row stride, direct) for a task's (m0.., q0..q1) product: out itself when the columns lie in one
    image (output rows are then P apart), else the slab ``res`` to be scattered."""
    p_img = out.shape[2]
    n = q0 // p_img
    if (q1 - 1) // p_img == n:
        return out.ravel()[(n * out.shape[1] + m0) * p_img + q0 - n * p_img:], p_img, True
    return res, q1 - q0, False


@jit(**SERIAL)
def _finish(out, res, bias, m0, m1, q0, q1, direct):
    """Add the bias to a product written in place, or scatter it from ``res`` with the bias."""
    if not direct:
        _scatter(res, q1 - q0, out, bias, m0, m1, q0, q1, out.shape[2])
        return
    n = q0 // out.shape[2]
    p0 = q0 - n * out.shape[2]
    for m in range(m0, m1):
        if bias[m] != 0:
            row = out[n, m, p0:p0 + q1 - q0]
            _add(row, row, bias[m])


@jit(**PARALLEL)
def taps_first(w, out):
    """out[i*kW + j, o, c] = w[o, c, i, j]: one (C_out, C_in/groups) matrix per kernel tap.

    Per output channel, its (C_in/groups, kH*kW) block is read from cache
    and written as kH*kW contiguous runs (twice as fast as writing the
    taps' runs interleaved, measured).
    """
    c_out, cin_g, kh, kw = w.shape
    kk = kh * kw
    rows = w.reshape(c_out, cin_g * kk)
    for o in numba.prange(c_out):
        src = rows[o]
        for tap in range(kk):
            dst = out[tap, o]
            for c in range(cin_g):
                dst[c] = src[c * kk + tap]


@jit(**PARALLEL)
def conv_direct_shifted(x, w, bias, out, groups, kh, kw, top, left, hp, wp, dh, dw, serial):
    """Stride-1 grouped conv by direct loops over whole padded planes (small images, depthwise).

    Per (image, output channel) plane: each input channel of its group is
    zero-padded into a block-local (hp, wp) buffer; every tap then adds
    weight x (the buffer shifted by i*dH*wp + j*dW) to an accumulator over
    the output rows computed on the padded width, one long vectorised loop
    per tap instead of one short loop per row; the valid columns are copied
    out at the end. ``serial`` runs the blocks on the calling thread.
    """
    args = (x, w, bias, out, groups, kh, kw, top, left, hp, wp, dh, dw)
    n_blocks, per_block = _plane_blocks(x.shape[0] * out.shape[1])
    if serial:
        for blk in range(n_blocks):
            _direct_shifted_block(blk, per_block, args)
    else:
        for blk in numba.prange(n_blocks):
            _direct_shifted_block(blk, per_block, args)


@jit(**SERIAL)
def _plane_blocks(n_planes):
    """(blocks, planes per block): at most 64 blocks, so per-block scratch is allocated rarely."""
    per_block = max(1, (n_planes + 63) // 64)
    return (n_planes + per_block - 1) // per_block, per_block


@jit(**SERIAL)
def _direct_shifted_block(blk, per_block, args):
    x, w, bias, out, groups, kh, kw, top, left, hp, wp, dh, dw = args
    n_img, _, height, width = x.shape
    c_out, cin_g = w.shape[0], w.shape[1]
    cout_g = c_out // groups
    h_out = out.shape[2]
    span = h_out * wp
    xp = np.zeros(hp * wp + (kw - 1) * dw, x.dtype)  # borders stay zero
    acc = np.empty(span, out.dtype)
    r, d = dh * wp, dw
    taps3x3 = (0, d, 2 * d, r, r + d, r + 2 * d, 2 * r, 2 * r + d, 2 * r + 2 * d)  # where a 3x3 kernel's taps read
    for task in range(blk * per_block, min((blk + 1) * per_block, n_img * c_out)):
        n = task // c_out
        o = task - n * c_out
        first = (o // cout_g) * cin_g
        _fill(acc, bias[o])
        for c in range(cin_g):
            for h in range(height):
                _add(xp[(top + h) * wp + left:(top + h) * wp + left + width], x[n, first + c, h], 0)
            if kh == 3 and kw == 3:
                _taps3x3(acc, xp, w[o, c], taps3x3, span)
                continue
            for i in range(kh):
                for j in range(kw):
                    v = w[o, c, i, j]
                    src = xp[i * dh * wp + j * dw:]
                    for t in range(span):
                        acc[t] += v * src[t]
        for oh in range(h_out):
            _add(out[n, o, oh], acc[oh * wp:], 0)


@jit(**SERIAL)
def _taps3x3(acc, buf, w, offsets, span):
    """acc[t] += sum_{k<9} w.flat[k] buf[t + offsets[k]]: a 3x3 kernel's nine taps in one pass, so that each
    vector of acc is loaded and stored once rather than nine times (the tap-by-tap loops are bound by those
    loads and stores). Each tap reads its own view of buf, indexed by t >= 0 alone: an index that numba
    cannot prove non-negative gets a wrap-around check that stops the loop vectorising."""
    a0, a1, a2, a3, a4, a5, a6, a7, a8 = (w[0, 0], w[0, 1], w[0, 2], w[1, 0], w[1, 1], w[1, 2],
                                          w[2, 0], w[2, 1], w[2, 2])
    o0, o1, o2, o3, o4, o5, o6, o7, o8 = offsets
    b0, b1, b2, b3, b4, b5, b6, b7, b8 = (buf[o0:], buf[o1:], buf[o2:], buf[o3:], buf[o4:], buf[o5:], buf[o6:],
                                          buf[o7:], buf[o8:])
    for t in range(span):
        acc[t] += ((a0 * b0[t] + a1 * b1[t] + a2 * b2[t]) + (a3 * b3[t] + a4 * b4[t] + a5 * b5[t])
                   + (a6 * b6[t] + a7 * b7[t] + a8 * b8[t]))


@jit(**PARALLEL)
def conv_direct_phases(x, w, bias, out, groups, kh, kw, sh, sw, top, left, dh, dw, hq, wq, serial):
    """Strided grouped conv by direct loops over whole planes split into stride phases (depthwise, stride 2).

    Per (image, output channel) plane: each input channel of its group is
    split into sh*sw zero-padded phase planes, phase (a, b)[r, q] =
    x_pad[r*sH + a, q*sW + b], each (hq, wq) with wq >= W_out + the largest
    (j*dW) // sW. Tap (i, j) then reads phase ((i*dH) % sH, (j*dW) % sW)
    shifted by ((i*dH) // sH) rows and ((j*dW) // sW) columns: as in
    :func:`conv_direct_shifted`, one long contiguous loop per tap over the
    output rows computed on width wq, instead of a strided gather per row.
    ``serial`` runs the blocks on the calling thread.
    """
    args = (x, w, bias, out, groups, kh, kw, sh, sw, top, left, dh, dw, hq, wq)
    n_blocks, per_block = _plane_blocks(x.shape[0] * out.shape[1])
    if serial:
        for blk in range(n_blocks):
            _direct_phases_block(blk, per_block, args)
    else:
        for blk in numba.prange(n_blocks):
            _direct_phases_block(blk, per_block, args)


@jit(**SERIAL)
def _direct_phases_block(blk, per_block, args):
    x, w, bias, out, groups, kh, kw, sh, sw, top, left, dh, dw, hq, wq = args
    n_img, _, height, width = x.shape
    c_out, cin_g = w.shape[0], w.shape[1]
    cout_g = c_out // groups
    h_out = out.shape[2]
    span = h_out * wq
    plane = hq * wq + wq  # one spare row: the last tap's run may end past the last phase row
    phases = np.empty(sh * sw * plane, x.dtype)  # (sH*sW, hq*wq + wq)
    acc = np.empty(span, out.dtype)
    taps3x3 = (_run(0, 0, dh, dw, sh, sw, wq, plane), _run(0, 1, dh, dw, sh, sw, wq, plane),
               _run(0, 2, dh, dw, sh, sw, wq, plane), _run(1, 0, dh, dw, sh, sw, wq, plane),
               _run(1, 1, dh, dw, sh, sw, wq, plane), _run(1, 2, dh, dw, sh, sw, wq, plane),
               _run(2, 0, dh, dw, sh, sw, wq, plane), _run(2, 1, dh, dw, sh, sw, wq, plane),
               _run(2, 2, dh, dw, sh, sw, wq, plane))  # where a 3x3 kernel's taps read
    for task in range(blk * per_block, min((blk + 1) * per_block, n_img * c_out)):
        n = task // c_out
        o = task - n * c_out
        first = (o // cout_g) * cin_g
        _fill(acc, bias[o])
        for c in range(cin_g):
            _fill(phases, 0)
            src = x[n, first + c]
            for a in range(sh):
                for b in range(sw):
                    dst = phases[(a * sw + b) * plane:]
                    # the phase columns q whose input column q*sW + b - left lies in [0, W)
                    q0 = max(0, (left - b + sw - 1) // sw)
                    q1 = min(wq, (width - 1 + left - b) // sw + 1)
                    for r in range(hq):
                        ih = r * sh + a - top
                        if ih < 0 or ih >= height or q1 <= q0:
                            continue
                        seg = dst[r * wq + q0:r * wq + q1]
                        row = src[ih, q0 * sw + b - left:]
                        for q in range(seg.size):
                            seg[q] = row[q * sw]
            if kh == 3 and kw == 3:
                _taps3x3(acc, phases, w[o, c], taps3x3, span)
                continue
            for i in range(kh):
                for j in range(kw):
                    v = w[o, c, i, j]
                    run = phases[_run(i, j, dh, dw, sh, sw, wq, plane):]
                    for t in range(span):
                        acc[t] += v * run[t]
        for oh in range(h_out):
            _add(out[n, o, oh], acc[oh * wq:], 0)


@jit(**SERIAL)
def _run(i, j, dh, dw, sh, sw, wq, plane):
    """Where tap (i, j)'s run starts in the phase planes: its phase ((i*dH) % sH, (j*dW) % sW), shifted by
    ((i*dH) // sH) rows and ((j*dW) // sW) columns."""
    return (((i * dh) % sh) * sw + (j * dw) % sw) * plane + ((i * dh) // sh) * wq + (j * dw) // sw


@jit(**PARALLEL)
def conv_im2col(fn, x, w, bias, out, ws_cols, ws_out, groups, tile, per_img, m_blocks,
                kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out, serial):
    """out (N, C_out, P) = grouped conv of x (N, C_in, H, W) by w (C_out, Kg) + bias.

    Tasks are (tile of ``tile`` output columns, block of output channels);
    with per_img > 0 each image is cut into per_img tiles (see
    :func:`_tile_columns`) and a tile's product is written straight into
    ``out``. ws_cols: (n_threads, >= C_in*kh*kw*tile), ws_out: (n_threads,
    >= m_block*tile), one slab per numba thread. ``bias`` has length C_out
    (zeros when there is none). ``serial`` runs every task on the calling
    thread, in slab 0.
    """
    args = (fn, x, w, bias, out, groups, tile, per_img, m_blocks, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)
    n_tasks = _n_tiles(x.shape[0], h_out * w_out, tile, per_img) * m_blocks
    if serial:
        for task in range(n_tasks):
            _im2col_task(task, ws_cols[0], ws_out[0], args)
    else:
        for task in numba.prange(n_tasks):
            thread = numba.get_thread_id()
            _im2col_task(task, ws_cols[thread], ws_out[thread], args)


@jit(**SERIAL)
def _im2col_task(task, cols, res, args):
    """Task (column tile, output-channel block) of :func:`conv_im2col`, in the slabs ``cols`` and ``res``."""
    fn, x, w, bias, out, groups, tile, per_img, m_blocks, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out = args
    c_in = x.shape[1]
    c_out = w.shape[0]
    k_g = w.shape[1]
    kk = kh * kw
    p_img = h_out * w_out
    total = x.shape[0] * p_img
    cin_g = c_in // groups
    cout_g = c_out // groups
    m_block = (c_out + m_blocks - 1) // m_blocks
    w_flat = w.ravel()
    tile_i = task // m_blocks
    m0 = (task - tile_i * m_blocks) * m_block
    m1 = min(m0 + m_block, c_out)
    if m0 >= m1:
        return
    q0, q1 = _tile_columns(tile_i, tile, per_img, p_img, total)
    n_cols = q1 - q0
    g0 = m0 // cout_g
    g1 = (m1 - 1) // cout_g + 1
    rows = (g1 - g0) * cin_g * kk
    cols2d = cols[:rows * n_cols].reshape((rows, n_cols))  # (C_in_used*kH*kW, T)
    im2col_tile(x, cols2d, q0, q1, g0 * cin_g, g1 * cin_g, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)
    target, ld, direct = _product_target(out, res, m0, q0, q1)
    for g in range(g0, g1):
        ma = max(m0, g * cout_g)
        mb = min(m1, (g + 1) * cout_g)
        _blas.gemm(fn, mb - ma, n_cols, k_g, w_flat[ma * k_g:], k_g,
                   cols[(g - g0) * k_g * n_cols:], n_cols,
                   target[(ma - m0) * ld:], ld, 0.0)
    _finish(out, res, bias, m0, m1, q0, q1, direct)


@jit(**PARALLEL)
def conv_shifted(fn, x, wt, bias, out, ws_in, ws_out, groups, band, m_blocks,
                 kh, kw, dh, dw, top, left, wp, h_out, w_out, in_place, serial):
    """Stride-1 grouped conv by shifted GEMMs on zero-padded input bands.

    wt: (kH*kW, C_out, C_in/groups), the weight with its taps first (see
    :func:`taps_first`). out: (N, C_out, h_out*w_out). Tasks are (image,
    band of ``band`` output rows, block of output channels). A task pads
    the input rows its band reads into ``ws_in`` (its thread's slab:
    (C_in_used, rows + (kH-1)*dH, wp) plus a tail), where they stay in
    cache, then sums kH*kW GEMMs reading them in place; ``ws_out`` holds
    the (m_block, rows*wp) product. With ``in_place`` (a 1x1 kernel, no
    padding) the GEMMs read x itself and write ``out`` itself. ``serial`` runs every task on the
    calling thread, in slab 0.
    """
    args = (fn, x, wt, bias, out, groups, band, m_blocks, kh, kw, dh, dw, top, left, wp, h_out, w_out, in_place)
    n_tasks = x.shape[0] * ((h_out + band - 1) // band) * m_blocks
    if serial:
        for task in range(n_tasks):
            _shifted_task(task, ws_in[0], ws_out[0], args)
    else:
        for task in numba.prange(n_tasks):
            thread = numba.get_thread_id()
            _shifted_task(task, ws_in[thread], ws_out[thread], args)


@jit(**SERIAL)
def _shifted_task(task, buf, res, args):
    """Task (image, band, output-channel block) of :func:`conv_shifted`, in the slabs ``buf`` and ``res``."""
    fn, x, wt, bias, out, groups, band, m_blocks, kh, kw, dh, dw, top, left, wp, h_out, w_out, in_place = args
    height, width = x.shape[2], x.shape[3]
    c_out = out.shape[1]
    cin_g = wt.shape[2]
    cout_g = c_out // groups
    n_bands = (h_out + band - 1) // band
    m_block = (c_out + m_blocks - 1) // m_blocks
    w_flat = wt.ravel()
    x_flat = x.ravel()
    span = (kh - 1) * dh
    mb_i = task % m_blocks
    rest = task // m_blocks
    band_i = rest % n_bands
    n = rest // n_bands
    m0 = mb_i * m_block
    m1 = min(m0 + m_block, c_out)
    if m0 >= m1:
        return
    oh0 = band_i * band
    rows = min(band, h_out - oh0)
    n_cols = rows * wp
    g0 = m0 // cout_g
    g1 = (m1 - 1) // cout_g + 1
    plane = (rows + span) * wp
    if not in_place:
        _pad_band(x, n, g0 * cin_g, g1 * cin_g, oh0, rows + span, top, left, wp, buf)
        tail = (g1 - g0) * cin_g * plane
        _fill(buf[tail:tail + (kw - 1) * dw], 0)
    if in_place:  # a 1x1 kernel: the product's rows are output rows, so GEMM writes them in place
        p_img = h_out * w_out
        o_flat = out.ravel()
        for g in range(g0, g1):
            ma = max(m0, g * cout_g)
            mb = min(m1, (g + 1) * cout_g)
            _blas.gemm(fn, mb - ma, n_cols, cin_g, w_flat[ma * cin_g:], cin_g,
                       x_flat[((n * groups + g) * cin_g * height + oh0) * width:], height * width,
                       o_flat[(n * c_out + ma) * p_img + oh0 * w_out:], p_img, 0.0)
        for m in range(m0, m1):
            if bias[m] != 0:
                row = out[n, m, oh0 * w_out:(oh0 + rows) * w_out]
                _add(row, row, bias[m])
        return
    for g in range(g0, g1):
        ma = max(m0, g * cout_g)
        mb = min(m1, (g + 1) * cout_g)
        for i in range(kh):
            for j in range(kw):
                tap = i * kw + j
                _blas.gemm(fn, mb - ma, n_cols, cin_g,
                           w_flat[(tap * c_out + ma) * cin_g:], cin_g,
                           buf[(g - g0) * cin_g * plane + i * dh * wp + j * dw:], plane,
                           res[(ma - m0) * n_cols:], n_cols,
                           0.0 if tap == 0 else 1.0)
    for m in range(m0, m1):
        for r in range(rows):
            d = (oh0 + r) * w_out
            _add(out[n, m, d:d + w_out], res[(m - m0) * n_cols + r * wp:], bias[m])


@jit(**PARALLEL)
def conv_grouped_tile(marker, cols, x, wg, bias, out, ws_in, ws_mid, groups, band, kh, kw, dh, dw, top, left,
                      wp, serial):
    """Stride-1 grouped conv with narrow groups by register tiles (:func:`.tile.float_tile`) on padded bands.

    wg (G*Mp, C_in/G*kH*kW): each group's C_out/G weight rows then zero rows
    up to Mp (a multiple of the tile's rows), columns in (c, i, j) order;
    ``marker`` and ``cols`` the tile's path and width. Tasks are (image,
    band of output rows): the band's padded input (``ws_in``, with ``cols``
    spare values the last tile of a row may read) is read in place by
    every tap, one tile of 4 channels x ``cols`` columns at a time, into
    ``ws_mid`` (G*Mp, band columns rounded up to ``cols``); then the valid
    columns go to ``out`` (N, C_out, H_out, W_out) with the bias.
    """
    n_bands = (out.shape[2] + band - 1) // band
    args = (marker, cols, x, wg, bias, out, groups, band, kh, kw, dh, dw, top, left, wp)
    if serial:
        for task in range(x.shape[0] * n_bands):
            _grouped_tile_task(task, n_bands, ws_in[0], ws_mid[0], args)
    else:
        for task in numba.prange(x.shape[0] * n_bands):
            thread = numba.get_thread_id()
            _grouped_tile_task(task, n_bands, ws_in[thread], ws_mid[thread], args)


@jit(**SERIAL)
def grouped_band_tiles(marker, cols, x, wg, n, oh0, rows, groups, kh, kw, dh, dw, top, left, wp, buf, mid):
    """A grouped stride-1 conv of output rows oh0..oh0+rows of image n by register tiles, into ``mid``.

    Pads the band's input rows (all channels) into ``buf`` (followed by
    ``cols`` spare zeros the last tile of a row may read), then computes
    mid[g*Mp + r, q] for every group g, its Mp = wg.shape[0] / groups rows
    (see :func:`conv_grouped_tile`) and the band's columns q on the padded
    width, rounded up to ``cols``: that row length, ncp, is returned.
    """
    c_in = x.shape[1]
    cin_g = c_in // groups
    mp = wg.shape[0] // groups
    ncp = (rows * wp + cols - 1) // cols * cols
    span = (kh - 1) * dh
    plane = (rows + span) * wp
    _pad_band(x, n, 0, c_in, oh0, rows + span, top, left, wp, buf)
    _fill(buf[c_in * plane:], 0)
    offsets = np.empty(cin_g * kh * kw, np.int64)  # where channel c's tap (i, j) starts in the group's band
    for c in range(cin_g):
        for i in range(kh):
            for j in range(kw):
                offsets[(c * kh + i) * kw + j] = c * plane + i * dh * wp + j * dw
    for g in range(groups):
        for r0 in range(0, mp, TILE_ROWS):
            for q0 in range(0, ncp, cols):
                float_tile(marker, wg, g * mp + r0, buf, g * cin_g * plane, offsets, q0, mid, g * mp + r0, ncp)
    return ncp


@jit(**SERIAL)
def _grouped_tile_task(task, n_bands, buf, mid, args):
    marker, cols, x, wg, bias, out, groups, band, kh, kw, dh, dw, top, left, wp = args
    c_out, h_out = out.shape[1], out.shape[2]
    cout_g = c_out // groups
    mp = wg.shape[0] // groups
    band_i = task % n_bands
    n = task // n_bands
    oh0 = band_i * band
    rows = min(band, h_out - oh0)
    ncp = grouped_band_tiles(marker, cols, x, wg, n, oh0, rows, groups, kh, kw, dh, dw, top, left, wp, buf, mid)
    for o in range(c_out):
        g = o // cout_g
        src = mid[(g * mp + o - g * cout_g) * ncp:]
        for r in range(rows):
            _add(out[n, o, oh0 + r], src[r * wp:], bias[o])
