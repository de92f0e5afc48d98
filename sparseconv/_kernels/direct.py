"""The direct convolution on a zero-padded copy of x, by pixel tiles (:mod:`.pixel_tile`).

No im2col matrix and no GEMM call: x is copied once to (N, C_in, H_p, W_p)
with its zero borders, the weight is packed once per block of B output
channels as (kH*kW*C_in, B), and each register tile sums a few output
pixels x B channels over all taps and input channels. A GEMM on im2col
columns spends part of its time packing operands and loading and
storing its accumulators per depth block; here the accumulators stay in
registers for the whole depth kH*kW*C_in, and the input is read in place.

A grouped conv packs each group's blocks apart and reads its group's
input channels only. Tasks are (chunk of output pixels, block of output
channels). The output
pixels of all N images are numbered q = n*H_out*W_out + h*W_out + w and
cut into chunks of whole tiles, so a tile may span rows and images: no
lane is spent on padding columns. A task keeps its channel block's
packed weight in cache across its chunk's tiles, gathers the tiles'
(pixels x B) results into a (B, chunk) slab, then writes the slab's rows
into the NCHW output with the bias: contiguous runs, not one value per
channel and pixel.
"""

import numba
import numpy as np

from .._config import PARALLEL, SERIAL, jit
from .conv import _add, _fill
from .pixel_tile import pixel_tile


@jit(**PARALLEL)
def pad_planes(x, xp, top, left, serial):
    """xp[n, c, r, s] = x[n, c, r - top, s - left], zero outside x: (N, C_in, H, W) -> (N, C_in, H_p, W_p)."""
    n_planes = xp.shape[0] * xp.shape[1]
    if serial:
        for plane in range(n_planes):
            _pad_plane(x, xp, top, left, plane)
    else:
        for plane in numba.prange(n_planes):
            _pad_plane(x, xp, top, left, plane)


@jit(**SERIAL)
def _pad_plane(x, xp, top, left, plane):
    """One padded plane. (conv._pad_band pads the same plane row by row, zeroing each row's borders apart:
    1.3-1.7x slower here on 56x56 to 7x7 planes; this one zeroes a row's right border and the next row's
    left in one run.)"""
    height, width = x.shape[2], x.shape[3]
    hp, wp = xp.shape[2], xp.shape[3]
    n = plane // xp.shape[1]
    c = plane - n * xp.shape[1]
    dst = xp[n, c].ravel()  # (H_p*W_p,)
    src = x[n, c]
    _fill(dst[:top * wp + left], 0)
    for h in range(height):
        row = (top + h) * wp + left
        _add(dst[row:row + width], src[h], 0)
        _fill(dst[row + width:min(row + wp, hp * wp)], 0)  # this row's right border, the next one's left
    _fill(dst[(top + height) * wp:], 0)


@jit(**PARALLEL)
def pack_weight(weight, wpk, serial):
    """wpk[b*K + (i*kW + j)*C_in + c, o] = weight[b*B + o, c, i, j], zero for b*B + o >= C_out.

    weight (C_out, C_in, kH, kW), wpk (n_blocks*K, B), K = kH*kW*C_in: the
    layout of :func:`conv_pixel_tiles`. One task per block of B output
    channels.
    """
    n_blocks = wpk.shape[0] // weight[0].size
    if serial:
        for blk in range(n_blocks):
            _pack_block(weight, wpk, blk)
    else:
        for blk in numba.prange(n_blocks):
            _pack_block(weight, wpk, blk)


@jit(**SERIAL)
def _pack_block(weight, wpk, blk):
    c_out, c_in, kh, kw = weight.shape
    kk = kh * kw
    k = c_in * kk
    width = wpk.shape[1]
    block = wpk[blk * k:(blk + 1) * k]  # (K, B)
    rows = weight.reshape(c_out, k)
    n_o = min(width, c_out - blk * width)
    step = 16  # input channels per pass: each weight row's run of them is read once, whole
    tmp = np.zeros((kk, step, width), wpk.dtype)  # (taps, channels, B); columns past n_o stay zero
    for c0 in range(0, c_in, step):
        n_c = min(step, c_in - c0)
        for o in range(n_o):
            src = rows[blk * width + o, c0 * kk:(c0 + n_c) * kk]
            for c in range(n_c):
                for t in range(kk):
                    tmp[t, c, o] = src[c * kk + t]
        for t in range(kk):  # tap t's rows for these channels: one contiguous run of the block
            _add(block[t * c_in + c0:t * c_in + c0 + n_c].ravel(), tmp[t, :n_c].ravel(), 0)


@jit(**PARALLEL)
def conv_pixel_tiles(marker, pixels, xp, wpk, bias, out, pix, koff, ws_tile, ws_slab, chunk, groups, serial):
    """out (N, C_out, P) = conv of the zero-padded xp (N, C_in, H_p, W_p) by the packed weight wpk, + bias.

    ``groups`` groups of C_in/G input and C_out/G output channels. wpk:
    (G*nb*K, B) with nb = ceil(C_out/G / B) blocks per group; block b of
    group g holds the K = kH*kW*C_in/G taps and channels (in (i, j, c)
    order) of the group's output channels b*B .. b*B+B-1, zero past the
    group's last. pix: where each output pixel's receptive field starts in
    xp's flat array (in channel 0 of its image), padded with copies of the
    last to whole tiles of ``pixels``; koff: where each tap sits in it.
    ws_tile (n_threads, >= pixels*B) and ws_slab (n_threads, >= B*chunk)
    are one slab per thread. ``serial`` runs every task on the calling
    thread, in slab 0.
    """
    width = wpk.shape[1]
    n_blocks = groups * ((out.shape[1] // groups + width - 1) // width)
    n_tasks = (out.shape[0] * out.shape[2] + chunk - 1) // chunk * n_blocks
    args = (marker, pixels, xp, wpk, bias, out, pix, koff, chunk, groups)
    if serial:
        for task in range(n_tasks):
            _pixel_task(task, ws_tile[0], ws_slab[0], args)
    else:
        for task in numba.prange(n_tasks):
            thread = numba.get_thread_id()
            _pixel_task(task, ws_tile[thread], ws_slab[thread], args)


@jit(**SERIAL)
def _pixel_task(task, res, slab, args):
    """Task (pixel chunk, channel block) of :func:`conv_pixel_tiles`, in the slabs ``res`` and ``slab``."""
    marker, pixels, xp, wpk, bias, out, pix, koff, chunk, groups = args
    cin_g = xp.shape[1] // groups
    plane = xp.shape[2] * xp.shape[3]
    cout_g, p_img = out.shape[1] // groups, out.shape[2]
    total = out.shape[0] * p_img
    width = wpk.shape[1]
    per_group = (cout_g + width - 1) // width
    n_blocks = groups * per_group
    k = koff.size * cin_g
    blk = task % n_blocks
    g = blk // per_group
    q0 = (task // n_blocks) * chunk
    q1 = min(total, q0 + chunk)
    o0 = g * cout_g + (blk - g * per_group) * width
    n_o = min(width, (g + 1) * cout_g - o0)
    x_flat = xp.ravel()[g * cin_g * plane:]  # pix counts from channel 0 of each image; this group's from here
    for t0 in range(q0, q1, pixels):
        pixel_tile(marker, wpk, blk * k, x_flat, pix, t0, koff, cin_g, plane, res, 0)
        for p in range(min(pixels, q1 - t0)):
            for o in range(n_o):
                slab[o * chunk + t0 - q0 + p] = res[p * width + o]
    q = q0
    while q < q1:  # the slab's rows, image by image, into the NCHW output
        n = q // p_img
        p = q - n * p_img
        seg = min(p_img - p, q1 - q)
        for o in range(n_o):
            _add(out[n, o0 + o, p:p + seg], slab[o * chunk + q - q0:], bias[o0 + o])
        q += seg
