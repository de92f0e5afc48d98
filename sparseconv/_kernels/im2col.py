"""numba kernels that move data between images and im2col columns.

Notation: x is (N, C_in, H, W); the column matrix has one row per (c, i, j)
— input channel c, kernel row i, kernel column j — and one column per output
position q = (n, h, w) flattened, so column q holds the receptive field of
output pixel (h, w) of image n.

``im2col_tile`` is the building block: it fills the rows of a range of input
channels for a range of columns, so that a caller can work through the
column matrix tile by tile without ever holding all of it.
"""

import numba
import numpy as np

from .._config import PARALLEL, SERIAL, jit


@jit(**SERIAL)
def _valid_range(off, step, size, n_out):
    """Output indices o in [lo, hi) with 0 <= o*step + off < size."""
    lo = 0 if off >= 0 else (-off + step - 1) // step
    hi = (size - 1 - off) // step + 1 if size - 1 - off >= 0 else 0
    hi = min(hi, n_out)
    lo = min(lo, hi)
    return lo, hi


@jit(**SERIAL)
def _segments(q0, q1, h_out, w_out):
    """Split columns q0..q1 into runs along one output row.

    Returns (n, oh, ow0, ow1, t) per run: image, output row, the run's output
    columns [ow0, ow1), and the tile offset t such that column (n, oh, ow) is
    tile column t + ow.
    """
    p_img = h_out * w_out
    n_seg = (q1 - q0 + w_out - 1) // w_out + 1
    seg = np.empty((n_seg, 5), np.int64)
    k = 0
    q = q0
    while q < q1:
        n = q // p_img
        p = q - n * p_img
        oh = p // w_out
        ow0 = p - oh * w_out
        ow1 = min(w_out, ow0 + q1 - q)
        seg[k, 0] = n
        seg[k, 1] = oh
        seg[k, 2] = ow0
        seg[k, 3] = ow1
        seg[k, 4] = q - q0 - ow0
        k += 1
        q += ow1 - ow0
    return seg[:k]


@jit(**SERIAL)
def _zero(dst):
    for k in range(dst.size):
        dst[k] = 0


@jit(**SERIAL)
def _copy(dst, src):
    for k in range(dst.size):
        dst[k] = src[k]


@jit(**SERIAL)
def im2col_tile(x, out, q0, q1, c0, c1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out):
    """Write columns q0..q1 of the rows of channels c0..c1 into ``out``.

    ``out[(c - c0)*kh*kw + i*kw + j, q - q0] = x_padded[n, c, h*sh + i*dh, w*sw + j*dw]``
    where q = (n*h_out + h)*w_out + w. ``out`` is a 2-D array of at least
    ((c1 - c0)*kh*kw, q1 - q0); its other entries are left alone.
    """
    height = x.shape[2]
    width = x.shape[3]
    seg = _segments(q0, q1, h_out, w_out)
    lo = np.empty(kw, np.int64)
    hi = np.empty(kw, np.int64)
    for j in range(kw):
        lo[j], hi[j] = _valid_range(j * dw - pw, sw, width, w_out)
    for c in range(c0, c1):
        for i in range(kh):
            r0 = ((c - c0) * kh + i) * kw
            for s in range(seg.shape[0]):
                n, oh, ow0, ow1, t = seg[s, 0], seg[s, 1], seg[s, 2], seg[s, 3], seg[s, 4]
                ih = oh * sh + i * dh - ph
                if ih < 0 or ih >= height:
                    for j in range(kw):
                        _zero(out[r0 + j, t + ow0:t + ow1])
                    continue
                src = x[n, c, ih]
                for j in range(kw):
                    row = out[r0 + j]
                    off_w = j * dw - pw
                    a = min(max(ow0, lo[j]), ow1)
                    b = max(min(ow1, hi[j]), a)
                    # Slices first, then loops from 0: numba then needs no
                    # negative-index wraparound, and LLVM vectorises the copies.
                    _zero(row[t + ow0:t + a])
                    if sw == 1:
                        _copy(row[t + a:t + b], src[a + off_w:b + off_w])
                    else:
                        dst = row[t + a:t + b]
                        for k in range(b - a):
                            dst[k] = src[(a + k) * sw + off_w]
                    _zero(row[t + b:t + ow1])


@jit(**SERIAL)
def col2im_tile(cols, x, q0, q1, c0, c1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out):
    """Adjoint of :func:`im2col_tile`: add the columns back into ``x`` (in place)."""
    height = x.shape[2]
    width = x.shape[3]
    p_img = h_out * w_out
    for c in range(c0, c1):
        for i in range(kh):
            for j in range(kw):
                row = cols[((c - c0) * kh + i) * kw + j]
                off_w = j * dw - pw
                ow_lo, ow_hi = _valid_range(off_w, sw, width, w_out)
                q = q0
                while q < q1:
                    n = q // p_img
                    p = q - n * p_img
                    oh = p // w_out
                    ow0 = p - oh * w_out
                    ow1 = min(w_out, ow0 + q1 - q)
                    t = q - q0 - ow0
                    ih = oh * sh + i * dh - ph
                    if 0 <= ih < height:
                        dst = x[n, c, ih]
                        for ow in range(max(ow0, ow_lo), min(ow1, ow_hi)):
                            dst[ow * sw + off_w] += row[t + ow]
                    q += ow1 - ow0


@jit(**PARALLEL)
def im2col_range(x, out, q0, q1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out):
    """Columns q0..q1 of the full column matrix, all channels, into ``out``.

    Parallel over (channel, image) pieces; each piece writes its own block of
    ``out``, so no two threads touch the same entry.
    """
    n_ch = x.shape[1]
    kk = kh * kw
    p_img = h_out * w_out
    n_first = q0 // p_img
    n_last = (q1 - 1) // p_img
    n_img = n_last - n_first + 1
    for piece in numba.prange(n_ch * n_img):
        c = piece // n_img
        n = n_first + piece - c * n_img
        a = max(q0, n * p_img)
        b = min(q1, (n + 1) * p_img)
        block = out[c * kk:(c + 1) * kk, a - q0:b - q0]
        im2col_tile(x, block, a, b, c, c + 1, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)


@jit(**PARALLEL)
def col2im_all(cols, x, kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out):
    """Add every column of ``cols`` back into ``x``; parallel over (image, channel)."""
    n_img = x.shape[0]
    n_ch = x.shape[1]
    kk = kh * kw
    p_img = h_out * w_out
    for piece in numba.prange(n_img * n_ch):
        n = piece // n_ch
        c = piece - n * n_ch
        block = cols[c * kk:(c + 1) * kk, n * p_img:(n + 1) * p_img]
        col2im_tile(block, x, n * p_img, (n + 1) * p_img, c, c + 1,
                    kh, kw, sh, sw, ph, pw, dh, dw, h_out, w_out)


