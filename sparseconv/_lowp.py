"""Integer and codebook kernels.

``int_gemm``
    out[o, j] = sum_k wq[o, k] * xq[j, k] on integers (int8 or int16 codes),
    accumulated in the integer type of ``out`` (int32 or int64; the caller
    picks it from an overflow bound). Both operands are contiguous along k,
    so each dot product is a vectorised integer reduction; four weight rows
    share each loaded activation row.

``codebook_gemm``
    out[o, j] = sum_c codebook[o, c] * (sum of cols[k, j] over the k with
    idx[o, k] = c): per output row, the column tile's entries are first
    added into one bin per centroid (C_in*kH*kW additions per output), then
    the k bins are multiplied by their centroids (k multiplications per
    output) instead of C_in*kH*kW.
"""

import numba
import numpy as np

from ._config import PARALLEL, SERIAL


@numba.njit(**SERIAL)
def _dot4(w0, w1, w2, w3, x, acc_dtype):
    s0 = acc_dtype(0)
    s1 = acc_dtype(0)
    s2 = acc_dtype(0)
    s3 = acc_dtype(0)
    for k in range(x.size):
        v = acc_dtype(x[k])
        s0 += acc_dtype(w0[k]) * v
        s1 += acc_dtype(w1[k]) * v
        s2 += acc_dtype(w2[k]) * v
        s3 += acc_dtype(w3[k]) * v
    return s0, s1, s2, s3


@numba.njit(**PARALLEL)
def int_gemm(wq, xq, out):
    """out (C_out, J) = wq (C_out, K) @ xq (J, K)^T on integers; wq's rows padded to a multiple of 4."""
    c_out, n_cols = out.shape
    acc_dtype = out.dtype.type
    row_blocks = wq.shape[0] // 4
    col_block = 64
    col_blocks = (n_cols + col_block - 1) // col_block
    for task in numba.prange(row_blocks * col_blocks):
        o0 = (task % row_blocks) * 4
        j0 = (task // row_blocks) * col_block
        w0, w1, w2, w3 = wq[o0], wq[o0 + 1], wq[o0 + 2], wq[o0 + 3]
        rows = min(4, c_out - o0)
        for j in range(j0, min(j0 + col_block, n_cols)):
            s = _dot4(w0, w1, w2, w3, xq[j], acc_dtype)
            for r in range(rows):
                out[o0 + r, j] = s[r]


@numba.njit(**PARALLEL)
def codebook_gemm(idx, codebook, cols, out, tile):
    """out[o, :] = sum_c codebook[o or 0, c] * bins[c] with bins[c] = sum of cols[k, :] where idx[o, k] = c.

    idx (C_out, K) uint8, codebook (C_out or 1, k), cols (K, J), out (C_out, J).
    Tasks are (column tile) x (row); each task's bins are (k, tile).
    """
    c_out, n_k = idx.shape
    n_cols = cols.shape[1]
    k = codebook.shape[1]
    per_row = codebook.shape[0] > 1
    n_tiles = (n_cols + tile - 1) // tile
    for task in numba.prange(n_tiles * c_out):
        t = task // c_out
        o = task - t * c_out
        c0 = t * tile
        c1 = min(c0 + tile, n_cols)
        m = c1 - c0
        bins = np.zeros((k, m), out.dtype)
        row = idx[o]
        for kk in range(n_k):
            b = bins[row[kk]]
            src = cols[kk, c0:c1]
            for q in range(m):
                b[q] += src[q]
        centroids = codebook[o if per_row else 0]
        dst = out[o, c0:c1]
        for q in range(m):
            dst[q] = 0
        for c in range(k):
            v = centroids[c]
            b = bins[c]
            for q in range(m):
                dst[q] += v * b[q]
