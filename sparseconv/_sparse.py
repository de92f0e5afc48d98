"""numba kernels for sparse weight matrices times dense im2col columns.

All three work through the columns in tiles of ``tile`` columns, so that the
tile of ``cols`` that a row's nonzeros read (C_in*kH*kW x tile) stays in the
core's cache while every output row uses it. Tasks are (column tile) x
(block of output rows), handed out in parallel.

- CSR: row r of the output is sum over its nonzeros p of data[p] * cols[indices[p]].
- BSR: the same with (bh, bw) blocks of nonzeros.
- N:M: every group of m consecutive entries of a row keeps n; ``pos`` says
  which (0 <= pos < m), so column index = group*m + pos.
"""

import numba
import numpy as np

from ._config import PARALLEL


@numba.njit(**PARALLEL)
def csr_matmat(indptr, indices, data, cols, out, tile, row_blocks):
    """out (R, T) = CSR (R, K) @ cols (K, T)."""
    n_rows = out.shape[0]
    n_cols = cols.shape[1]
    n_tiles = (n_cols + tile - 1) // tile
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    for task in numba.prange(n_tiles * row_blocks):
        c0 = (task // row_blocks) * tile
        c1 = min(c0 + tile, n_cols)
        r0 = (task % row_blocks) * rows_per
        acc = np.empty(c1 - c0, out.dtype)
        for r in range(r0, min(r0 + rows_per, n_rows)):
            acc[:] = 0
            p = indptr[r]
            end = indptr[r + 1]
            while p + 4 <= end:  # four nonzeros per pass: fewer loads and stores of acc
                v0, v1, v2, v3 = data[p], data[p + 1], data[p + 2], data[p + 3]
                s0, s1, s2, s3 = cols[indices[p]], cols[indices[p + 1]], cols[indices[p + 2]], cols[indices[p + 3]]
                for k in range(c1 - c0):
                    acc[k] += v0 * s0[c0 + k] + v1 * s1[c0 + k] + v2 * s2[c0 + k] + v3 * s3[c0 + k]
                p += 4
            while p < end:
                v = data[p]
                s = cols[indices[p]]
                for k in range(c1 - c0):
                    acc[k] += v * s[c0 + k]
                p += 1
            dst = out[r]
            for k in range(c1 - c0):
                dst[c0 + k] = acc[k]


@numba.njit(**PARALLEL)
def bsr_matmat(indptr, indices, data, cols, out, tile, row_blocks):
    """out (R, T) = BSR (R, K) with blocks data (nnzb, bh, bw) @ cols (K, T)."""
    n_cols = cols.shape[1]
    bh = data.shape[1]
    bw = data.shape[2]
    n_brows = indptr.size - 1
    n_tiles = (n_cols + tile - 1) // tile
    brows_per = (n_brows + row_blocks - 1) // row_blocks
    for task in numba.prange(n_tiles * row_blocks):
        c0 = (task // row_blocks) * tile
        c1 = min(c0 + tile, n_cols)
        b0 = (task % row_blocks) * brows_per
        acc = np.empty((bh, c1 - c0), out.dtype)
        for br in range(b0, min(b0 + brows_per, n_brows)):
            acc[:] = 0
            for p in range(indptr[br], indptr[br + 1]):
                base = indices[p] * bw
                for j in range(bw):
                    s = cols[base + j]
                    for i in range(bh):
                        v = data[p, i, j]
                        a = acc[i]
                        for k in range(c1 - c0):
                            a[k] += v * s[c0 + k]
            for i in range(bh):
                dst = out[br * bh + i]
                a = acc[i]
                for k in range(c1 - c0):
                    dst[c0 + k] = a[k]


@numba.njit(**PARALLEL)
def nm_matmat(values, pos, m, cols, out, tile, row_blocks):
    """out (R, T) = N:M-sparse (R, K) @ cols (K, T); values/pos are (R, K/m*n)."""
    n_rows = out.shape[0]
    n_cols = cols.shape[1]
    per_row = values.shape[1]
    n = per_row // (cols.shape[0] // m) if cols.shape[0] else 0
    n_tiles = (n_cols + tile - 1) // tile
    rows_per = (n_rows + row_blocks - 1) // row_blocks
    for task in numba.prange(n_tiles * row_blocks):
        c0 = (task // row_blocks) * tile
        c1 = min(c0 + tile, n_cols)
        r0 = (task % row_blocks) * rows_per
        acc = np.empty(c1 - c0, out.dtype)
        for r in range(r0, min(r0 + rows_per, n_rows)):
            acc[:] = 0
            for q in range(per_row):
                v = values[r, q]
                s = cols[(q // n) * m + pos[r, q]]
                for k in range(c1 - c0):
                    acc[k] += v * s[c0 + k]
            dst = out[r]
            for k in range(c1 - c0):
                dst[c0 + k] = acc[k]
