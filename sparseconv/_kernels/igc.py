"""IGCV1 kernels: the secondary 1x1 group conv with both channel shuffles as strides, and the fused
stride-1 pass (primary and secondary per band of output rows, the primary's output kept in cache).

``igc_fused`` runs the primary as one GEMM per (group, tap); ``igc_fused_narrow``, for narrow primary
groups (the caller's bound: 16 channels), with the register tile of :mod:`.tile` instead (a GEMM call per
group of so few channels costs more than its multiply-adds).
"""

import numba

from .. import _blas
from .._config import PARALLEL, SERIAL, jit
from .conv import _add, _fill, _pad_band, grouped_band_tiles


@jit(**PARALLEL)
def igc_secondary(fn, y, wd, bias, out, tile):
    """out = P^T W_d P y for an IGCV1's 1x1 secondary group conv, the permutations folded into strides.

    y, out: (N, G, P) with G = L*M; wd: (M, L, L). Secondary group m
    reads channels l*M + m (l = 0..L-1) and writes the same channels
    back, so its rows sit M*P apart: one GEMM per (image, group, column
    tile) with that leading dimension, and no copy for either permutation.
    """
    n_img, g_ch, p_img = y.shape
    m_groups, lg = wd.shape[0], wd.shape[1]
    n_tiles = (p_img + tile - 1) // tile
    y_flat = y.ravel()
    o_flat = out.ravel()
    w_flat = wd.ravel()
    for task in numba.prange(n_img * m_groups * n_tiles):
        t = task % n_tiles
        rest = task // n_tiles
        m = rest % m_groups
        n = rest // m_groups
        c0 = t * tile
        cols = min(tile, p_img - c0)
        base = (n * g_ch + m) * p_img + c0
        _blas.gemm(fn, lg, cols, lg, w_flat[m * lg * lg:], lg, y_flat[base:], m_groups * p_img,
                   o_flat[base:], m_groups * p_img, 0.0)
        for l_ in range(lg):
            _add(o_flat[base + l_ * m_groups * p_img:base + l_ * m_groups * p_img + cols],
                 o_flat[base + l_ * m_groups * p_img:], bias[l_ * m_groups + m])


@jit(**PARALLEL)
def igc_fused(fn, x, wt, wd, bias, out, ws_in, ws_mid, ws_res, band, kh, kw, dh, dw, top, left, wp, h_out,
              w_out):
    """Stride-1 IGCV1 in one pass per band: primary group conv, secondary 1x1 group conv, both shuffles.

    x (N, G, H, W); wt (kH*kW, G, M), the primary weight taps first; wd
    (M, L, L); out (N, G, h_out*w_out). Per task (image, band of output
    rows) a thread pads the band's input rows (all G channels) into
    ``ws_in``, runs the primary as kH*kW shifted GEMMs per group into
    ``ws_mid`` (G, rows*wp), then the secondary straight from it: group m
    reads rows l*M + m and writes rows l*M + m of ``ws_res``, both with
    leading dimension M*rows*wp, so neither permutation is a copy; last,
    the valid columns go to ``out``. The primary's output never leaves
    the core's cache.
    """
    n_img, g_ch = x.shape[0], x.shape[1]
    m_ch = wt.shape[2]
    l_ch = g_ch // m_ch
    n_bands = (h_out + band - 1) // band
    w_flat = wt.ravel()
    d_flat = wd.ravel()
    span = (kh - 1) * dh
    for task in numba.prange(n_img * n_bands):
        thread = numba.get_thread_id()
        buf = ws_in[thread]
        mid = ws_mid[thread]
        res = ws_res[thread]
        band_i = task % n_bands
        n = task // n_bands
        oh0 = band_i * band
        rows = min(band, h_out - oh0)
        n_cols = rows * wp
        plane = (rows + span) * wp
        _pad_band(x, n, 0, g_ch, oh0, rows + span, top, left, wp, buf)
        _fill(buf[g_ch * plane:g_ch * plane + (kw - 1) * dw], 0)
        for g in range(l_ch):
            for i in range(kh):
                for j in range(kw):
                    tap = i * kw + j
                    _blas.gemm(fn, m_ch, n_cols, m_ch, w_flat[(tap * g_ch + g * m_ch) * m_ch:], m_ch,
                               buf[g * m_ch * plane + i * dh * wp + j * dw:], plane,
                               mid[g * m_ch * n_cols:], n_cols, 0.0 if tap == 0 else 1.0)
        for m in range(m_ch):
            _blas.gemm(fn, l_ch, n_cols, l_ch, d_flat[m * l_ch * l_ch:], l_ch, mid[m * n_cols:], m_ch * n_cols,
                       res[m * n_cols:], m_ch * n_cols, 0.0)
        for ch in range(g_ch):
            for r in range(rows):
                d = (oh0 + r) * w_out
                _add(out[n, ch, d:d + w_out], res[ch * n_cols + r * wp:], bias[ch])


@jit(**PARALLEL)
def igc_fused_narrow(marker, cols, fn, x, wg, wd, bias, out, ws_in, ws_mid, ws_res, band, kh, kw, dh, dw, top,
                     left, wp, h_out, w_out):
    """:func:`igc_fused` with the primary by register tiles: for primary groups of M <= 8 channels.

    wg (L*Mp, M*kH*kW): the primary weight, each group's M rows followed by
    Mp - M zero rows (Mp a multiple of TILE_ROWS), columns in (c, i, j)
    order; ``marker`` and ``cols`` name the tile's path and its width
    (:func:`sparseconv._kernels.tile.tile_cols`). Per task the band's
    padded input ``ws_in`` is followed by ``cols`` spare values that the
    last tile of a row may read; ``ws_mid`` holds the primary (L*Mp,
    ncp) with ncp the band's columns rounded up to ``cols``.
    """
    n_img = x.shape[0]
    n_bands = (h_out + band - 1) // band
    for task in numba.prange(n_img * n_bands):
        thread = numba.get_thread_id()
        _narrow_task(task, n_bands, ws_in[thread], ws_mid[thread], ws_res[thread],
                     (marker, cols, fn, x, wg, wd, bias, out, band, kh, kw, dh, dw, top, left, wp, h_out, w_out))


@jit(**SERIAL)
def _narrow_task(task, n_bands, buf, mid, res, args):
    marker, cols, fn, x, wg, wd, bias, out, band, kh, kw, dh, dw, top, left, wp, h_out, w_out = args
    g_ch = x.shape[1]
    m_ch = wd.shape[0]
    l_ch = g_ch // m_ch
    mp = wg.shape[0] // l_ch
    band_i = task % n_bands
    n = task // n_bands
    oh0 = band_i * band
    rows = min(band, h_out - oh0)
    n_cols = rows * wp
    # the primary: a group conv of L groups of M channels, rows g*Mp + c of mid
    ncp = grouped_band_tiles(marker, cols, x, wg, n, oh0, rows, l_ch, kh, kw, dh, dw, top, left, wp, buf, mid)
    for m in range(m_ch):  # secondary group m: rows l*Mp + m of mid, rows l*M + m of res
        _blas.gemm(fn, l_ch, n_cols, l_ch, wd[m].ravel(), l_ch, mid[m * ncp:], mp * ncp,
                   res[m * n_cols:], m_ch * n_cols, 0.0)
    for ch in range(g_ch):
        for r in range(rows):
            d = (oh0 + r) * w_out
            _add(out[n, ch, d:d + w_out], res[ch * n_cols + r * wp:], bias[ch])
