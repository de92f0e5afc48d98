"""numba kernels for sparse weight matrices times dense im2col columns.

All three work through the columns in tiles of ``tile`` columns, so that the
tile of ``cols`` that a row's nonzeros read (C_in*kH*kW x tile) stays in the
core's cache while every output row uses it; where each row of the tile is
used often enough, the tile is first copied into a compact block. Tasks are
(column tile) x (block of output rows), handed out in parallel.

- CSR: row r of the output is sum over its nonzeros p of data[p] * cols[indices[p]].
- BSR: the same with (bh, bw) blocks of nonzeros.
- N:M: every group of m consecutive entries of a row keeps n; ``pos`` says
  which (0 <= pos < m), so column index = group*m + pos.
"""

import numba
import numpy as np

from .._config import PARALLEL, SERIAL, jit
from .tile import sparse_row_tile


@jit(**SERIAL)
def _pack(cols, c0, c1, packed):
    """packed[k, :c1-c0] = cols[k, c0:c1]: the tile as one compact block."""
    for k in range(cols.shape[0]):
        src = cols[k]
        dst = packed[k]
        for j in range(c1 - c0):
            dst[j] = src[c0 + j]


@jit(**SERIAL)
def _task(task, row_blocks, tile, n_cols, n_rows):
    """Columns [c0, c1) and rows [r0, r1) of one task: (column tile) x (block of rows)."""
    c0 = (task // row_blocks) * tile
    per = (n_rows + row_blocks - 1) // row_blocks
    r0 = (task % row_blocks) * per
    return c0, min(c0 + tile, n_cols), r0, min(r0 + per, n_rows)


@jit(**SERIAL)
def _csr_rows(indptr, indices, data, src, off, w, r0, r1, out, c0):
    """out[r, c0:c0+w] = sum_p data[p] * src[indices[p], off:off+w] for rows r0..r1."""
    acc = np.empty(w, out.dtype)
    for r in range(r0, r1):
        for k in range(w):
            acc[k] = 0
        p = indptr[r]
        end = indptr[r + 1]
        while p + 4 <= end:  # four nonzeros per pass: a quarter of the loads and stores of acc
            v0, v1, v2, v3 = data[p], data[p + 1], data[p + 2], data[p + 3]
            s0 = src[indices[p], off:off + w]  # slices: indices from 0 vectorise (no wraparound)
            s1 = src[indices[p + 1], off:off + w]
            s2 = src[indices[p + 2], off:off + w]
            s3 = src[indices[p + 3], off:off + w]
            for k in range(w):
                acc[k] += v0 * s0[k] + v1 * s1[k] + v2 * s2[k] + v3 * s3[k]
            p += 4
        while p < end:
            v = data[p]
            s = src[indices[p], off:off + w]
            for k in range(w):
                acc[k] += v * s[k]
            p += 1
        dst = out[r]
        for k in range(w):
            dst[c0 + k] = acc[k]


@jit(**SERIAL)
def _csr_rows_tiled(indptr, indices, data, packed, ld, w, r0, r1, out, c0, marker, tile_cols):
    """out[r, c0:c0+w] from the packed tile (K, ld) by register tiles of ``tile_cols`` columns, rows r0..r1."""
    flat = packed.ravel()
    res = np.empty(ld, out.dtype)
    for r in range(r0, r1):
        for q0 in range(0, ld, tile_cols):
            sparse_row_tile(marker, data, indices, indptr[r], indptr[r + 1], flat, ld, q0, res, q0)
        dst = out[r]
        for k in range(w):
            dst[c0 + k] = res[k]


@jit(**PARALLEL)
def csr_matmat(indptr, indices, data, cols, out, tile, row_blocks, pack, marker, tile_cols):
    """out (R, T) = CSR (R, K) @ cols (K, T).

    With ``pack``, each task first copies its column tile into a compact
    (K, ld) block, ld the tile's width rounded up to ``tile_cols`` (the
    padding zeros): rows of the tile then sit 4*ld bytes apart instead of
    4*T, which the cache and TLB reward when every row of the tile is read
    many times (dense enough weights), and each output row is computed by
    register tiles (:func:`sparseconv._kernels.tile.sparse_row_tile` on the
    path ``marker`` selects), its accumulators kept in registers over all
    the row's nonzeros. At high sparsity the copy costs more than it saves,
    and rows are summed four nonzeros per pass from ``cols`` itself.
    """
    n_tiles = (cols.shape[1] + tile - 1) // tile
    for task in numba.prange(n_tiles * row_blocks):
        c0, c1, r0, r1 = _task(task, row_blocks, tile, cols.shape[1], out.shape[0])
        if pack:
            w = c1 - c0
            ld = (w + tile_cols - 1) // tile_cols * tile_cols
            packed = np.empty((cols.shape[0], ld), cols.dtype)
            _pack(cols, c0, c1, packed)
            for k in range(cols.shape[0]):
                for j in range(w, ld):
                    packed[k, j] = 0
            _csr_rows_tiled(indptr, indices, data, packed, ld, w, r0, r1, out, c0, marker, tile_cols)
        else:
            _csr_rows(indptr, indices, data, cols, c0, c1 - c0, r0, r1, out, c0)


@jit(**SERIAL)
def _bsr_rows(indptr, indices, data, src, off, w, b0, b1, out, c0):
    """Block rows b0..b1 of out[:, c0:c0+w] from BSR blocks and src[:, off:off+w]."""
    bh = data.shape[1]
    bw = data.shape[2]
    acc = np.empty((bh, w), out.dtype)
    for br in range(b0, b1):
        for i in range(bh):
            for k in range(w):
                acc[i, k] = 0
        for p in range(indptr[br], indptr[br + 1]):
            base = indices[p] * bw
            for j in range(bw):
                s = src[base + j, off:off + w]
                for i in range(bh):
                    v = data[p, i, j]
                    a = acc[i]
                    for k in range(w):
                        a[k] += v * s[k]
        for i in range(bh):
            dst = out[br * bh + i]
            a = acc[i]
            for k in range(w):
                dst[c0 + k] = a[k]


@jit(**PARALLEL)
def bsr_matmat(indptr, indices, data, cols, out, tile, row_blocks, pack):
    """out (R, T) = BSR (R, K) with blocks data (nnzb, bh, bw) @ cols (K, T); ``pack`` as for CSR."""
    n_tiles = (cols.shape[1] + tile - 1) // tile
    for task in numba.prange(n_tiles * row_blocks):
        c0, c1, b0, b1 = _task(task, row_blocks, tile, cols.shape[1], indptr.size - 1)
        if pack:
            packed = np.empty((cols.shape[0], c1 - c0), cols.dtype)
            _pack(cols, c0, c1, packed)
            _bsr_rows(indptr, indices, data, packed, 0, c1 - c0, b0, b1, out, c0)
        else:
            _bsr_rows(indptr, indices, data, cols, c0, c1 - c0, b0, b1, out, c0)


@jit(**SERIAL)
def _nm_rows(values, pos, n, m, src, off, w, r0, r1, out, c0):
    """out[r, c0:c0+w] for rows r0..r1 of an N:M matrix; column of entry q = (q // n)*m + pos."""
    per_row = values.shape[1]
    acc = np.empty(w, out.dtype)
    for r in range(r0, r1):
        for k in range(w):
            acc[k] = 0
        q = 0
        while q + 4 <= per_row:
            v0, v1, v2, v3 = values[r, q], values[r, q + 1], values[r, q + 2], values[r, q + 3]
            s0 = src[(q // n) * m + pos[r, q], off:off + w]
            s1 = src[((q + 1) // n) * m + pos[r, q + 1], off:off + w]
            s2 = src[((q + 2) // n) * m + pos[r, q + 2], off:off + w]
            s3 = src[((q + 3) // n) * m + pos[r, q + 3], off:off + w]
            for k in range(w):
                acc[k] += v0 * s0[k] + v1 * s1[k] + v2 * s2[k] + v3 * s3[k]
            q += 4
        while q < per_row:
            v = values[r, q]
            s = src[(q // n) * m + pos[r, q], off:off + w]
            for k in range(w):
                acc[k] += v * s[k]
            q += 1
        dst = out[r]
        for k in range(w):
            dst[c0 + k] = acc[k]


@jit(**PARALLEL)
def nm_matmat(values, pos, n, m, cols, out, tile, row_blocks, pack):
    """out (R, T) = N:M-sparse (R, K) @ cols (K, T); values/pos are (R, K/m*n); ``pack`` as for CSR."""
    n_tiles = (cols.shape[1] + tile - 1) // tile
    for task in numba.prange(n_tiles * row_blocks):
        c0, c1, r0, r1 = _task(task, row_blocks, tile, cols.shape[1], out.shape[0])
        if pack:
            packed = np.empty((cols.shape[0], c1 - c0), cols.dtype)
            _pack(cols, c0, c1, packed)
            _nm_rows(values, pos, n, m, packed, 0, c1 - c0, r0, r1, out, c0)
        else:
            _nm_rows(values, pos, n, m, cols, c0, c1 - c0, r0, r1, out, c0)
