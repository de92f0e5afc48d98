"""Integer and codebook kernels.

``int_gemm``
    out[o, j] = sum_k wq[o, k] * xq[j, k] on integers (int8 or int16 codes),
    accumulated in the integer type of ``out`` (int32 or int64; the caller
    picks it from an overflow bound). Both operands are contiguous along k,
    so each dot product is a vectorised integer reduction; four weight rows
    share each loaded activation row.

``tiled_int8_gemm`` (AVX512-VNNI, AVX-VNNI, AVX2)
    The same product for int8 weights and activations of at most 8 bits in
    register tiles written in LLVM IR (:func:`int8_tile`): 64 (or 32)
    multiply-adds per ``vpdpbusd`` with VNNI, 16 per ``vpmaddwd`` on AVX2;
    :func:`int8_path` picks one (see the section below).

``codebook_gemm``
    out[o, j] = sum_c codebook[o, c] * (sum of cols[k, j] over the k with
    idx[o, k] = c): per output row, the column tile's entries are first
    added into one bin per centroid (C_in*kH*kW additions per output), then
    the k bins are multiplied by their centroids (k multiplications per
    output) instead of C_in*kH*kW.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

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


# -- int8 paths that use the CPU's integer dot-product instructions ---------------------------------------
#
# vpdpbusd (AVX512-VNNI on 512-bit vectors, AVX-VNNI on 256-bit ones)
# multiplies unsigned bytes by signed bytes and adds each group of four
# products into one int32 lane, without saturating. The a-bit activations
# become unsigned by an offset, u = q + 2^(a-1) in [1, 2^a - 1], and
# sum_k w_k q_k = sum_k w_k u_k - 2^(a-1) sum_k w_k. Layout ("quads"): a
# panel of PANEL_COLS["quads"] columns stores, for each group of four k, the
# four bytes of every column side by side (one int32 per column), so one
# vector load brings 16 (or 8) columns x 4 k; a weight row's four bytes of
# that group are broadcast to all lanes.
#
# AVX2 has no vpdpbusd. vpmaddubsw multiplies the same unsigned by signed
# bytes but adds each pair of products into an int16 that saturates, so it
# is exact only when 2 (2^a - 1) max|w| <= 32767: weights of at most 7 bits,
# or activations of at most 7 bits (FBGEMM's "reduce_range" for the same
# reason); vpmaddwd by ones then widens the pair sums to int32 ("avx2").
# Otherwise (8-bit weights and activations) the operands are widened to
# int16 and vpmaddwd multiplies signed 16-bit pairs into int32, exactly, at
# half the multiply-adds per instruction ("avx2-int16"; layout "pairs": two
# int16 per column of each group of two k, one int32).

#: int8 paths, best first, and the CPU feature each needs ("portable" needs none)
INT8_PATHS = ("vnni512", "avxvnni", "avx2", "avx2-int16", "portable")
_PATH_FEATURE = {"vnni512": "avx512vnni", "avxvnni": "avxvnni", "avx2": "avx2", "avx2-int16": "avx2"}
#: each fast path's activation layout
LAYOUT = {"vnni512": "quads", "avxvnni": "quads", "avx2": "quads", "avx2-int16": "pairs"}
#: k per int32 of a layout, and the columns of one panel
K_PER_WORD = {"quads": 4, "pairs": 2}
PANEL_COLS = {"quads": 32, "pairs": 16}
#: output rows and columns of one register tile: ROWS x (vectors x lanes)
TILE_ROWS = 4
TILE_COLS = {"vnni512": 32, "avxvnni": 16, "avx2": 16, "avx2-int16": 16}
#: the scalar type that selects a path's instruction in :func:`int8_tile` (numba specialises on it)
MARKER = {"vnni512": np.uint8, "avxvnni": np.uint16, "avx2": np.uint32, "avx2-int16": np.int16}


def int8_path(weight_bound=127, act_bits=8):
    """The int8 path for weights with max |Q - z| = ``weight_bound`` <= 127 and ``act_bits`` <= 8-bit
    activations: the first of :data:`INT8_PATHS` whose feature the CPU has, that ``SPARSECONV_ISA``
    allows and that is exact for such operands. The defaults: 8-bit weights and activations."""
    for path in INT8_PATHS[:-1]:
        if path == "avx2" and 2 * (2 ** act_bits - 1) * weight_bound > np.iinfo(np.int16).max:
            continue  # vpmaddubsw's int16 pair sums would saturate
        if _config.has(_PATH_FEATURE[path]):
            return path
    return "portable"


_I32 = ir.IntType(32)
_MARKER_PATH = {numba.from_dtype(np.dtype(m)): p for p, m in MARKER.items()}


def _step(builder, path, acc, x, w):
    """acc + the dot products of x and w's groups in each lane, as ``path``'s instruction does."""
    vty = acc.type
    if path == "avx2":
        bty, hty = ir.VectorType(ir.IntType(8), 4 * vty.count), ir.VectorType(ir.IntType(16), 2 * vty.count)
        maddubs = cgutils.get_or_insert_function(builder.module, ir.FunctionType(hty, [bty, bty]),
                                                 "llvm.x86.avx2.pmadd.ub.sw")
        madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [hty, hty]),
                                              "llvm.x86.avx2.pmadd.wd")
        pairs = builder.call(maddubs, [builder.bitcast(x, bty), builder.bitcast(w, bty)])
        return builder.add(acc, builder.call(madd, [pairs, ir.Constant(hty, [1] * hty.count)]))
    if path == "avx2-int16":
        hty = ir.VectorType(ir.IntType(16), 2 * vty.count)
        madd = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [hty, hty]),
                                              "llvm.x86.avx2.pmadd.wd")
        return builder.add(acc, builder.call(madd, [builder.bitcast(x, hty), builder.bitcast(w, hty)]))
    dp = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                        f"llvm.x86.avx512.vpdpbusd.{32 * vty.count}")
    return builder.call(dp, [acc, x, w])

@intrinsic
def int8_tile(typingctx, marker, w32, o0, panel, q0, res):
    """res[r, q] = sum_k w[o0 + r, k] * x[k, q0 + q], r < TILE_ROWS, q < TILE_COLS[path], on one path.

    ``marker``'s type (:data:`MARKER`) picks the path, so each path's
    kernel is compiled (and holds instructions) only where it runs. w32
    (R, G) int32: each int32 the weights of one group of k (four int8 or
    two int16); panel (G, PANEL_COLS of the path's layout) int32: each int32 one column's
    activations of that group (four offset uint8 or two int16); res
    (TILE_ROWS, TILE_COLS) int32. TILE_ROWS x vectors accumulators stay in
    registers across the groups; each weight word is broadcast to all
    lanes.
    """
    i32_2d = types.Array(types.int32, 2, "C")
    path = _MARKER_PATH.get(marker)
    if path is None or w32 != i32_2d or panel != i32_2d or res != i32_2d:
        return None
    if not isinstance(o0, types.Integer) or not isinstance(q0, types.Integer):
        return None
    lanes = 16 if path == "vnni512" else 8
    vectors = TILE_COLS[path] // lanes

    def codegen(context, builder, signature, args):
        w_arr, x_arr, r_arr = (context.make_array(signature.args[i])(context, builder, args[i])
                               for i in (1, 3, 5))
        row0 = context.cast(builder, args[2], signature.args[2], types.int64)
        col0 = context.cast(builder, args[4], signature.args[4], types.int64)
        i64 = ir.IntType(64)
        vty = ir.VectorType(_I32, lanes)
        n_groups = cgutils.unpack_tuple(builder, w_arr.shape, 2)[1]
        width = ir.Constant(i64, PANEL_COLS[LAYOUT[path]])  # a constant: the panel's row stride
        accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0] * lanes)) for _ in range(vectors)]
                for _ in range(TILE_ROWS)]
        undef = ir.Constant(vty, ir.Undefined)
        broadcast = ir.Constant(vty, [0] * lanes)
        with cgutils.for_range(builder, n_groups) as loop:
            g = loop.index
            base = builder.add(builder.mul(g, width), col0)
            starts = [builder.gep(x_arr.data, [builder.add(base, ir.Constant(i64, lanes * h))])
                      for h in range(vectors)]
            xs = [builder.load(builder.bitcast(at, vty.as_pointer()), align=4) for at in starts]
            for r in range(TILE_ROWS):
                row = builder.add(row0, ir.Constant(i64, r))
                wv = builder.load(builder.gep(w_arr.data, [builder.add(builder.mul(row, n_groups), g)]))
                splat = builder.shuffle_vector(builder.insert_element(undef, wv, ir.Constant(_I32, 0)), undef,
                                               broadcast)
                for h in range(vectors):
                    acc = accs[r][h]
                    builder.store(_step(builder, path, builder.load(acc), xs[h], splat), acc)
        for r in range(TILE_ROWS):
            for h in range(vectors):
                dst = builder.gep(r_arr.data, [ir.Constant(i64, r * lanes * vectors + lanes * h)])
                builder.store(builder.load(accs[r][h]), builder.bitcast(dst, vty.as_pointer()), align=4)
        return context.get_dummy_value()

    return types.void(marker, w32, o0, panel, q0, res), codegen


@jit(**SERIAL)
def _quantize(v, scale, qmax):
    """int32(clip(rint(v / scale), -qmax, qmax)), v in float64 as ``QuantizedWeight.quantize_columns`` does it."""
    q = np.rint(np.float64(v) / scale)
    return np.int32(min(max(q, -qmax), qmax))


@jit(**PARALLEL)
def pack_words(cols, scale, qmax, per, offset, out):
    """Quantize cols (K, J) and pack each group of ``per`` k into int32 words: out (n_panels, G, COLS).

    q_x = clip(rint(cols / scale), -qmax, qmax). per = 4 ("quads"): word =
    the bytes uint8(q_x[4g + t, j] + offset), t < 4, lowest first (offset =
    qmax + 1 makes them unsigned); rows past K and columns past J are the
    offset (they meet zero weights or are never written out). per = 2
    ("pairs", offset 0): word = the int16 q_x[2g + t, j], t < 2; padding 0.
    One task per group: it streams along its ``per`` rows of cols; the loop
    over a panel's columns vectorises.
    """
    n_k, n_cols = cols.shape
    n_panels, n_groups, width = out.shape
    bits = 32 // per
    offset = np.int32(offset)
    mask = np.int32((1 << bits) - 1)
    for g in numba.prange(n_groups):
        pad = np.int32(0)  # the k past K, in every column
        full = np.int32(0)  # a column past J
        for t in range(per):
            full |= offset << np.int32(bits * t)
            if per * g + t >= n_k:
                pad |= offset << np.int32(bits * t)
        for p in range(n_panels):
            j0 = p * width
            m = min(width, n_cols - j0)
            dst = out[p, g]
            for q in range(m):
                dst[q] = pad
            for q in range(m, width):
                dst[q] = full
            for t in range(min(per, n_k - per * g)):
                src = cols[per * g + t, j0:j0 + m]
                shift = np.int32(bits * t)
                for q in range(m):
                    dst[q] |= ((_quantize(src[q], scale, qmax) + offset) & mask) << shift


@jit(**PARALLEL)
def tiled_int8_gemm(marker, tile_cols, w32, rowsum, offset, factor, panels, out):
    """out (C_out, J) = factor[:, None] * (w (C_out, K) @ q_x), the integer product on the path ``marker`` selects.

    tile_cols is :data:`TILE_COLS` of that path; w32 (R, G) int32 (rows
    padded to TILE_ROWS, k to whole groups, with zeros) and rowsum (R,) its
    rows' sums; panels from :func:`pack_words`, whose activations are
    offset by ``offset`` (2^(a-1) for quads, 0 for pairs), taken off as
    offset * rowsum. factor (C_out,): int32 ones for the exact int32 product, or the
    float scales (then the dequantized product is stored straight into a
    float out, with no int32 temporary). Tasks are (panel) x (block of 16
    row tiles), so a panel is reused from cache by the rows of its block.
    """
    c_out, n_cols = out.shape
    n_panels, _, width = panels.shape
    row_tiles = w32.shape[0] // TILE_ROWS
    per_task = 16
    row_blocks = (row_tiles + per_task - 1) // per_task
    for task in numba.prange(n_panels * row_blocks):
        p = task // row_blocks
        b = task - p * row_blocks
        res = np.empty((TILE_ROWS, tile_cols), np.int32)
        m = min(width, n_cols - p * width)
        for tile in range(b * per_task, min((b + 1) * per_task, row_tiles)):
            o0 = tile * TILE_ROWS
            for q0 in range(0, m, tile_cols):
                int8_tile(marker, w32, o0, panels[p], q0, res)
                j0 = p * width + q0
                for r in range(min(TILE_ROWS, c_out - o0)):
                    shift = offset * rowsum[o0 + r]
                    f = factor[o0 + r]
                    dst = out[o0 + r, j0:j0 + min(tile_cols, m - q0)]
                    for q in range(dst.size):
                        dst[q] = (res[r, q] - shift) * f
