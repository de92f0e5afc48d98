"""Integer and codebook kernels.

``int_gemm``
    out[o, j] = sum_k wq[o, k] * xq[j, k] on integers (int8 or int16 codes),
    accumulated in the integer type of ``out`` (int32 or int64; the caller
    picks it from an overflow bound). Both operands are contiguous along k,
    so each dot product is a vectorised integer reduction; four weight rows
    share each loaded activation row.

``vnni_gemm`` (CPUs with AVX512-VNNI)
    The same product for int8 weights and activations of at most 8 bits,
    64 multiply-adds per ``vpdpbusd`` instruction, written in LLVM IR
    (:func:`vnni_tile`); see the section below.

``codebook_gemm``
    out[o, j] = sum_c codebook[o, c] * (sum of cols[k, j] over the k with
    idx[o, k] = c): per output row, the column tile's entries are first
    added into one bin per centroid (C_in*kH*kW additions per output), then
    the k bins are multiplied by their centroids (k multiplications per
    output) instead of C_in*kH*kW.
"""

import numba
import numpy as np

from .. import _config
from .._config import PARALLEL, SERIAL, jit
from .sparse import _task


@jit(**SERIAL)
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


@jit(**PARALLEL)
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


@jit(**PARALLEL)
def codebook_gemm(idx, codebook, cols, out, tile, row_blocks):
    """out[o, :] = sum_c codebook[o or 0, c] * bins[c] with bins[c] = sum of cols[k, :] where idx[o, k] = c.

    idx (C_out, K) uint8, codebook (C_out or 1, k), cols (K, J), out (C_out, J).
    Tasks are (column tile) x (block of rows): the tile (K x tile) stays in
    the core's cache while every row of the block bins it; the bins
    (k x tile) stay in L1.
    """
    c_out, n_k = idx.shape
    n_cols = cols.shape[1]
    k = codebook.shape[1]
    per_row = codebook.shape[0] > 1
    n_tiles = (n_cols + tile - 1) // tile
    for task in numba.prange(n_tiles * row_blocks):
        c0, c1, r0, r1 = _task(task, row_blocks, tile, n_cols, c_out)
        m = c1 - c0
        bins = np.empty((k, m), out.dtype)
        for o in range(r0, r1):
            for c in range(k):
                for q in range(m):
                    bins[c, q] = 0
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


# -- int8 x uint8 on AVX512-VNNI ---------------------------------------------------------------------------
#
# vpdpbusd multiplies 64 unsigned bytes by 64 signed bytes and adds each
# group of four products into one of 16 int32 lanes: 64 multiply-adds per
# instruction. The activations become unsigned by an offset, u = q + 128, and
# sum_k w_k q_k = sum_k w_k u_k - 128 sum_k w_k. Layout: a panel of VNNI_COLS
# columns stores, for each group of four k, the four bytes of every column
# side by side (one int32 per column), so one vector load brings 16 columns x
# 4 k; a weight row's four bytes of that group are broadcast to all lanes.

#: Output rows and columns of one VNNI register tile (2 vectors of 16 int32 lanes per row).
VNNI_ROWS, VNNI_COLS = 4, 32


def has_vnni():
    """Whether the VNNI path runs: the CPU has AVX512-VNNI and ``SPARSECONV_ISA`` allows AVX-512."""
    return _config.has("avx512vnni")

if numba.config.DISABLE_JIT:

    def vnni_tile(w32, o0, panel, res):
        w = w32[o0:o0 + VNNI_ROWS].view(np.int8).astype(np.int64)  # (ROWS, 4*G)
        x = panel.view(np.uint8).reshape(panel.shape[0], VNNI_COLS, 4)  # (G, COLS, 4)
        x = x.transpose(0, 2, 1).reshape(-1, VNNI_COLS).astype(np.int64)  # (4*G, COLS)
        res[:] = w @ x

else:
    from llvmlite import ir
    from numba import types
    from numba.core import cgutils
    from numba.extending import intrinsic

    @intrinsic
    def vnni_tile(typingctx, w32, o0, panel, res):
        """res[r, q] = sum over groups g and t < 4 of int8(w[o0 + r, 4g + t]) * uint8(x[4g + t, q]).

        w32 (R, G) int32: each int32 four signed weight bytes; panel (G,
        VNNI_COLS) int32: each int32 four unsigned activation bytes of one
        column; res (VNNI_ROWS, VNNI_COLS) int32. VNNI_ROWS x 2 accumulators
        of 16 lanes stay in registers across the groups.
        """
        i32_2d = types.Array(types.int32, 2, "C")
        if w32 != i32_2d or panel != i32_2d or res != i32_2d or not isinstance(o0, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            w_arr, x_arr, r_arr = (context.make_array(signature.args[i])(context, builder, args[i])
                                   for i in (0, 2, 3))
            row0 = context.cast(builder, args[1], signature.args[1], types.int64)
            i32, i64 = ir.IntType(32), ir.IntType(64)
            vty = ir.VectorType(i32, 16)
            dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                "llvm.x86.avx512.vpdpbusd.512")
            n_groups = cgutils.unpack_tuple(builder, w_arr.shape, 2)[1]
            halves = VNNI_COLS // 16
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0] * 16)) for _ in range(halves)]
                    for _ in range(VNNI_ROWS)]
            undef = ir.Constant(vty, ir.Undefined)
            broadcast = ir.Constant(ir.VectorType(i32, 16), [0] * 16)
            with cgutils.for_range(builder, n_groups) as loop:
                g = loop.index
                base = builder.mul(g, ir.Constant(i64, VNNI_COLS))
                starts = [builder.gep(x_arr.data, [builder.add(base, ir.Constant(i64, 16 * h))]) for h in range(halves)]
                xs = [builder.load(builder.bitcast(at, vty.as_pointer()), align=4) for at in starts]
                for r in range(VNNI_ROWS):
                    row = builder.add(row0, ir.Constant(i64, r))
                    wv = builder.load(builder.gep(w_arr.data, [builder.add(builder.mul(row, n_groups), g)]))
                    splat = builder.shuffle_vector(builder.insert_element(undef, wv, ir.Constant(i32, 0)), undef,
                                                   broadcast)
                    for h in range(halves):
                        acc = accs[r][h]
                        builder.store(builder.call(dp, [builder.load(acc), xs[h], splat]), acc)
            for r in range(VNNI_ROWS):
                for h in range(halves):
                    dst = builder.gep(r_arr.data, [ir.Constant(i64, r * VNNI_COLS + 16 * h)])
                    builder.store(builder.load(accs[r][h]), builder.bitcast(dst, vty.as_pointer()), align=4)
            return context.get_dummy_value()

        return types.void(w32, o0, panel, res), codegen


@jit(**SERIAL)
def _quantize_u8(v, scale, qmax):
    """uint8(clip(rint(v / scale), -qmax, qmax) + 128)."""
    q = np.rint(v / scale)
    return np.uint8(np.int32(min(max(q, -qmax), qmax)) + 128)


@jit(**PARALLEL)
def pack_vnni_activations(cols, scale, qmax, out):
    """out[p, g, q] = the four bytes uint8(q_x[4g + t, p*COLS + q] + 128), t < 4, as one int32.

    q_x = clip(rint(cols / scale), -qmax, qmax), in float64 as
    ``QuantizedWeight.quantize_columns`` computes it; rows past K and columns
    past J are left as 128 (they meet zero weights or are never written
    out). cols (K, J) float, out (n_panels, G, VNNI_COLS) int32 seen as
    bytes. One task per panel.
    """
    n_k, n_cols = cols.shape
    n_panels, n_groups, width = out.shape
    as_bytes = out.reshape(n_panels, n_groups * width).view(np.uint8)  # (n_panels, G*COLS*4)
    for p in numba.prange(n_panels):
        j0 = p * width
        m = min(width, n_cols - j0)
        for g in range(n_groups):
            row = as_bytes[p, g * width * 4:(g + 1) * width * 4]
            if m < width or 4 * g + 4 > n_k:
                for q in range(width * 4):
                    row[q] = 128
            if 4 * g + 4 <= n_k:
                s0 = cols[4 * g, j0:j0 + m]
                s1 = cols[4 * g + 1, j0:j0 + m]
                s2 = cols[4 * g + 2, j0:j0 + m]
                s3 = cols[4 * g + 3, j0:j0 + m]
                for q in range(m):
                    row[4 * q] = _quantize_u8(np.float64(s0[q]), scale, qmax)
                    row[4 * q + 1] = _quantize_u8(np.float64(s1[q]), scale, qmax)
                    row[4 * q + 2] = _quantize_u8(np.float64(s2[q]), scale, qmax)
                    row[4 * q + 3] = _quantize_u8(np.float64(s3[q]), scale, qmax)
            else:
                for t in range(n_k - 4 * g):
                    src = cols[4 * g + t, j0:j0 + m]
                    for q in range(m):
                        row[4 * q + t] = _quantize_u8(np.float64(src[q]), scale, qmax)


@jit(**PARALLEL)
def vnni_gemm(w32, rowsum, panels, out):
    """out (C_out, J) int32 = w (C_out, K) @ q_x on VNNI: the tiles minus 128 * the weight rows' sums.

    w32 (R, G) int32 from int8 weights (rows padded to VNNI_ROWS, k to a
    multiple of 4, with zeros); panels from :func:`pack_vnni_activations`.
    Tasks are (panel) x (block of 16 row tiles), so a panel is reused from
    cache by the rows of its block.
    """
    c_out, n_cols = out.shape
    n_panels = panels.shape[0]
    row_tiles = w32.shape[0] // VNNI_ROWS
    per_task = 16
    row_blocks = (row_tiles + per_task - 1) // per_task
    for task in numba.prange(n_panels * row_blocks):
        p = task // row_blocks
        b = task - p * row_blocks
        res = np.empty((VNNI_ROWS, VNNI_COLS), np.int32)
        j0 = p * VNNI_COLS
        m = min(VNNI_COLS, n_cols - j0)
        for tile in range(b * per_task, min((b + 1) * per_task, row_tiles)):
            o0 = tile * VNNI_ROWS
            vnni_tile(w32, o0, panels[p], res)
            for r in range(min(VNNI_ROWS, c_out - o0)):
                shift = 128 * rowsum[o0 + r]
                dst = out[o0 + r, j0:j0 + m]
                for q in range(m):
                    dst[q] = res[r, q] - shift
