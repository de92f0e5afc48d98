"""Bit-level kernels: popcount, sign packing, the XNOR-popcount GEMM and the add/subtract GEMM.

Signs are packed 64 to a word along the reduction axis (C_in*kH*kW): bit b
of word w is 1 when entry 64*w + b is negative (-1) and 0 when it is +1
(zero counts as +1); bits past the end are 0 in every operand. Then for two
packed sign vectors of n entries

    sum_k a_k b_k = n - 2 * popcount(a XOR b),

because each differing sign contributes -1 and each agreeing one +1, and the
padding bits agree.

Numba has no CPU popcount (numba#10403): ``popcount64`` is an intrinsic that
emits LLVM's ``ctpop``, which LLVM compiles to the ``popcnt`` instruction (on
vectors: AVX-512 ``vpopcntq`` where the CPU has VPOPCNTDQ, else on AVX2 the
nibble lookup: ``vpshufb`` of each half-byte in a 16-entry table, bytes
summed by ``vpsadbw``) and to a shift-and-add sequence without any. ``popcount64_swar`` is
the same count written out portably, kept as the readable reference.
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

#: The XNOR tile: ROWS weight rows x LANES packed columns, LANES uint64 per vector register (AVX-512).
ROWS, LANES = 4, 8
#: A task of :func:`xnor_gemm`: up to ROW_GROUP weight rows x BLOCK_GROUP blocks of LANES packed columns.
ROW_GROUP, BLOCK_GROUP = 64, 8


def popcount_path():
    """How the XNOR kernel's ``llvm.ctpop`` on vectors compiles for the CPU numba targets: "vpopcntq"
    (AVX512-VPOPCNTDQ), "vpshufb" (AVX2: a nibble lookup per byte, summed by vpsadbw), "popcnt" (one
    word at a time), "python" (JIT off). Unlike the int8 paths this follows the compiled code, not
    ``SPARSECONV_ISA`` (``sparseconv.system.emulation_env`` changes both)."""
    features = _config.cpu_features()
    if not features:
        return "python"
    return "vpopcntq" if "avx512vpopcntdq" in features else "vpshufb" if "avx2" in features else "popcnt"


if numba.config.DISABLE_JIT:  # kernels run as Python: plain int operations

    def popcount64(x):
        return np.uint64(int(x).bit_count())

    def trailing_zeros64(x):
        x = int(x)
        return np.uint64((x & -x).bit_length() - 1)

    def xnor_tile(wbits, o0, xbits, j, res):
        for r in range(ROWS):
            for k in range(LANES):
                res[r, k] = sum(int(a ^ b).bit_count() for a, b in zip(wbits[o0 + r], xbits[:, j + k]))

else:

    @intrinsic
    def popcount64(typingctx, x):
        """Number of 1 bits of a uint64 (LLVM ``ctpop``)."""
        if x != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            return builder.ctpop(args[0])

        return types.uint64(types.uint64), codegen

    @intrinsic
    def trailing_zeros64(typingctx, x):
        """Index of the lowest 1 bit of a nonzero uint64 (LLVM ``cttz``)."""
        if x != types.uint64:
            return None

        def codegen(context, builder, signature, args):
            return builder.cttz(args[0], context.get_constant(types.boolean, True))

        return types.uint64(types.uint64), codegen

    @intrinsic
    def xnor_tile(typingctx, wbits, o0, xbits, j, res):
        """res[r, k] = sum over w of popcount(wbits[o0 + r, w] ^ xbits[w, j + k]), r < ROWS, k < LANES.

        Written in LLVM IR on <LANES x i64> vectors: the auto-vectoriser
        keeps to 256-bit vectors on these CPUs and spills accumulators to
        memory, this keeps ROWS accumulators of LANES counts in registers,
        loads each vector of packed columns once for ROWS rows, and uses
        ``llvm.ctpop`` on the whole vector (``vpopcntq zmm`` with AVX-512
        VPOPCNTDQ; two ymm halves by nibble lookup on AVX2). wbits (C_out,
        n_words) and xbits (n_words, J) must be C-contiguous uint64, res a
        C-contiguous (ROWS, LANES) uint64; the caller keeps o0 + ROWS <= C_out
        and j + LANES <= J.
        """
        u64_2d = types.Array(types.uint64, 2, "C")
        if wbits != u64_2d or xbits != u64_2d or res != u64_2d:
            return None
        if not isinstance(o0, types.Integer) or not isinstance(j, types.Integer):
            return None

        def codegen(context, builder, signature, args):
            w_arr, x_arr, r_arr = (context.make_array(signature.args[i])(context, builder, args[i]) for i in (0, 2, 4))
            o_val = context.cast(builder, args[1], signature.args[1], types.int64)
            j_val = context.cast(builder, args[3], signature.args[3], types.int64)
            i64, i32 = ir.IntType(64), ir.IntType(32)
            vty = ir.VectorType(i64, LANES)
            n_words = cgutils.unpack_tuple(builder, w_arr.shape, 2)[1]
            n_cols = cgutils.unpack_tuple(builder, x_arr.shape, 2)[1]
            ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty]),
                                                   f"llvm.ctpop.v{LANES}i64")
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0] * LANES)) for _ in range(ROWS)]
            undef = ir.Constant(vty, ir.Undefined)
            broadcast = ir.Constant(ir.VectorType(i32, LANES), [0] * LANES)
            with cgutils.for_range(builder, n_words) as loop:
                w = loop.index
                at = builder.gep(x_arr.data, [builder.add(builder.mul(w, n_cols), j_val)])
                xv = builder.load(builder.bitcast(at, vty.as_pointer()), align=8)
                for r in range(ROWS):
                    row = builder.add(o_val, ir.Constant(i64, r))
                    a = builder.load(builder.gep(w_arr.data, [builder.add(builder.mul(row, n_words), w)]))
                    splat = builder.shuffle_vector(builder.insert_element(undef, a, ir.Constant(i32, 0)), undef,
                                                   broadcast)
                    count = builder.call(ctpop, [builder.xor(xv, splat)])
                    builder.store(builder.add(builder.load(accs[r]), count), accs[r])
            for r in range(ROWS):
                dst = builder.gep(r_arr.data, [ir.Constant(i64, r * LANES)])
                builder.store(builder.load(accs[r]), builder.bitcast(dst, vty.as_pointer()), align=8)
            return context.get_dummy_value()

        return types.void(wbits, o0, xbits, j, res), codegen


@jit(**SERIAL)
def popcount64_swar(x):
    """Portable popcount of a uint64 by summing bits in ever wider fields (the classic SWAR count)."""
    x = x - ((x >> np.uint64(1)) & np.uint64(0x5555555555555555))
    x = (x & np.uint64(0x3333333333333333)) + ((x >> np.uint64(2)) & np.uint64(0x3333333333333333))
    x = (x + (x >> np.uint64(4))) & np.uint64(0x0F0F0F0F0F0F0F0F)
    x = x + (x >> np.uint64(8))  # byte sums into ever wider fields, without a (wrapping) multiply
    x = x + (x >> np.uint64(16))
    x = x + (x >> np.uint64(32))
    return x & np.uint64(0x7F)


@jit(**PARALLEL)
def pack_rows(a, out):
    """out[r, w] bit b = (a[r, 64*w + b] < 0): the signs of each row of a (R, n), packed."""
    n = a.shape[1]
    for r in numba.prange(a.shape[0]):
        row = a[r]
        for w in range(out.shape[1]):
            word = np.uint64(0)
            for b in range(min(64, n - 64 * w)):
                if row[64 * w + b] < 0:
                    word |= np.uint64(1) << np.uint64(b)
            out[r, w] = word


#: Columns of one task of the sign-packing kernels: each of its 64 rows is read as one contiguous run.
PACK_COLS = 512


@jit(**SERIAL)
def _sign_words(src, k0, nb, j0, m, words):
    """words[q] = sum over b < nb of (src[k0 + b, j0 + q] < 0) << b, q < m: 64 rows' signs, one word per column.

    Row by row, each a contiguous run of m values (a stream the hardware
    prefetches), or-ed into the m words (which stay in the first-level
    cache). The comparison is ordered: NaN and -0.0 are not negative, as in
    NumPy.
    """
    for q in range(m):
        words[q] = 0
    for b in range(nb):
        row = src[k0 + b, j0:j0 + m]
        bit = np.uint64(b)
        for q in range(m):
            words[q] |= np.uint64(row[q] < 0) << bit


@jit(**PARALLEL)
def pack_columns(cols, out):
    """Pack the signs of the columns of cols (n, J) into blocks of LANES columns: out (n_blocks, n_words, LANES).

    out[c, w, q] bit b = (cols[64*w + b, c*LANES + q] < 0); columns past J
    are all zero bits. A block's words are contiguous (n_words * 64 bytes),
    so one register tile of :func:`xnor_gemm` reads them as one stream that
    stays in the core's first-level cache for all the rows it meets. One
    task per (word, PACK_COLS columns), by :func:`_sign_words`.
    """
    n, n_cols = cols.shape
    n_blocks, n_words, lanes = out.shape
    groups = (n_blocks * lanes + PACK_COLS - 1) // PACK_COLS
    for task in numba.prange(n_words * groups):
        w = task // groups
        j0 = (task - w * groups) * PACK_COLS
        m = max(0, min(PACK_COLS, n_cols - j0))
        words = np.zeros(PACK_COLS, np.uint64)
        _sign_words(cols, 64 * w, min(64, n - 64 * w), j0, m, words)
        for c in range(j0 // lanes, min((j0 + PACK_COLS) // lanes, n_blocks)):
            for q in range(lanes):
                out[c, w, q] = words[c * lanes + q - j0]


@jit(**PARALLEL)
def pack_channels(x, out):
    """out[n, v, p] bit b = (x[n, 64*v + b, p] < 0): the signs of x (N, C, P) packed along channels, (N, Cw, P).

    One task per (image, word of 64 channels, PACK_COLS pixels), by
    :func:`_sign_words`.
    """
    n_img, c, p_img = x.shape
    n_words = out.shape[1]
    groups = (p_img + PACK_COLS - 1) // PACK_COLS
    for task in numba.prange(n_img * n_words * groups):
        n = task // (n_words * groups)
        v = (task // groups) % n_words
        j0 = (task % groups) * PACK_COLS
        m = min(PACK_COLS, p_img - j0)
        _sign_words(x[n], 64 * v, min(64, c - 64 * v), j0, m, out[n, v, j0:j0 + m])


@jit(**PARALLEL)
def tap_columns(xw, w_img, q0, q1, out, kh, kw, sh, sw, top, left, dh, dw, h_out, w_out):
    """im2col on packed words: out[c, (i*kW + j)*Cw + v, t] = xw[n, v, ih*W + iw], 0 outside the image.

    xw (N, Cw, H*W) from :func:`pack_channels`; out holds columns q0..q1 of
    the N*H_out*W_out: its column c*LANES + t is q = q0 + c*LANES + t, output
    pixel (n, oh, ow), whose tap (i, j) reads input pixel ih = oh*sh - top +
    i*dh, iw = ow*sw - left + j*dw. The words come out as
    :func:`pack_columns` lays out blocks, with the reduction axis ordered
    (kernel row, kernel column, channel word). A zero word is 64 signs of
    +1, the sign of the zero padding. Columns past q1 are zero.
    """
    n_blocks, n_words, lanes = out.shape
    cw, hw = xw.shape[1], xw.shape[2]
    h = hw // w_img
    p_img = h_out * w_out
    for c in numba.prange(n_blocks):
        for t in range(lanes):
            q = q0 + c * lanes + t
            if q >= q1:
                for k in range(n_words):
                    out[c, k, t] = 0
                continue
            n = q // p_img
            oh = (q - n * p_img) // w_out
            ow = q - n * p_img - oh * w_out
            for i in range(kh):
                ih = oh * sh - top + i * dh
                for j in range(kw):
                    iw = ow * sw - left + j * dw
                    base = (i * kw + j) * cw
                    if 0 <= ih < h and 0 <= iw < w_img:
                        src = ih * w_img + iw
                        for v in range(cw):
                            out[c, base + v, t] = xw[n, v, src]
                    else:
                        for v in range(cw):
                            out[c, base + v, t] = 0


@jit(**PARALLEL)
def xnor_gemm(wbits, xbits, n, factor, colscale, q0, out):
    """out[i, o, p] = factor[o] * colscale[q - q0] * (n - 2 popcount(wbits[o] XOR column q - q0 of xbits)).

    That is factor[o] * (sign(W) @ sign(X))[o, q] * colscale, for columns q
    = i*P + p of out (N, C_out, P) from q0 on: a conv2d's output in its own
    layout, or (1, C_out, J) for a plain product. wbits (R, n_words) with R
    >= C_out a multiple of ROWS (padding rows are ignored), xbits (n_blocks,
    n_words, LANES) from :func:`pack_columns` or :func:`tap_columns`; factor
    (C_out,) int32 ones and an empty colscale for the exact int32 dot
    products into an int32 out, or the float scales (colscale: one per
    column, or empty for none) straight into a float out. Tasks are
    (ROW_GROUP weight rows) x (BLOCK_GROUP blocks), done in ROWS x LANES
    register tiles (:func:`xnor_tile`), rows inside blocks: a block's words
    are read from the first-level cache by every tile of the task's rows,
    whose words stay in the core's caches across its blocks. A tile whose
    LANES columns lie in one image is stored row by row, each row LANES
    contiguous values computed in out's type; others column by column.
    """
    n_img, c_out, p_img = out.shape
    n_cols = min(xbits.shape[0] * LANES, n_img * p_img - q0)
    n_blocks = (n_cols + LANES - 1) // LANES
    scaled = colscale.size > 0
    block_groups = (n_blocks + BLOCK_GROUP - 1) // BLOCK_GROUP
    # row groups outermost: numba splits the tasks into equal contiguous runs, and a
    # run of whole row groups has the same work whatever the number of columns
    for task in numba.prange(((wbits.shape[0] + ROW_GROUP - 1) // ROW_GROUP) * block_groups):
        g0 = (task // block_groups) * ROW_GROUP
        c0 = (task % block_groups) * BLOCK_GROUP
        res = np.empty((ROWS, LANES), np.uint64)
        scale = np.ones(LANES, out.dtype)
        count = np.empty(LANES, out.dtype)  # a row of dot products, in out's type (float32 stays float32)
        for c in range(c0, min(c0 + BLOCK_GROUP, n_blocks)):
            j = c * LANES  # first column of the block, counted from q0
            lanes = min(LANES, n_cols - j)
            img = (q0 + j) // p_img
            p = q0 + j - img * p_img
            if scaled:
                for k in range(lanes):
                    scale[k] = colscale[j + k]
            for o0 in range(g0, min(g0 + ROW_GROUP, c_out), ROWS):
                xnor_tile(wbits, o0, xbits[c], 0, res)
                rows = min(ROWS, c_out - o0)
                if lanes == LANES and p + LANES <= p_img:
                    for r in range(rows):
                        f = factor[o0 + r]
                        dst = out[img, o0 + r, p:p + LANES]
                        for k in range(LANES):
                            count[k] = n - 2 * np.int64(res[r, k])
                        for k in range(LANES):
                            dst[k] = count[k] * f * scale[k]
                else:
                    for k in range(lanes):
                        i, pk = divmod(q0 + j + k, p_img)
                        for r in range(rows):
                            out[i, o0 + r, pk] = (n - 2 * np.int64(res[r, k])) * factor[o0 + r] * scale[k]


@jit(**PARALLEL)
def signed_sum(wbits, cols, colsum, alpha, out, tile, row_blocks):
    """out[o, :] = alpha[o] * (sum_k sign(W[o, k]) cols[k, :]) with additions only.

    sum_k s_k c_k = colsum - 2 * (sum of the c_k whose sign is -1): for each
    row, the rows of ``cols`` at its set bits are added into an accumulator
    (found word by word with trailing-zero counts), then one subtraction and
    one scaling per output. Tasks are (column tile) x (block of rows); the
    tile (K x tile) stays in the core's cache across the rows of the block.
    """
    c_out = wbits.shape[0]
    n_cols = cols.shape[1]
    n_tiles = (n_cols + tile - 1) // tile
    for task in numba.prange(n_tiles * row_blocks):
        c0, c1, r0, r1 = _task(task, row_blocks, tile, n_cols, c_out)
        acc = np.empty(c1 - c0, out.dtype)
        s = colsum[c0:c1]
        found = np.empty(4, np.int64)
        for o in range(r0, r1):
            for q in range(acc.size):
                acc[q] = 0
            n_found = 0
            for w in range(wbits.shape[1]):
                word = wbits[o, w]
                while word:
                    found[n_found] = 64 * w + np.int64(trailing_zeros64(word))
                    word &= word - np.uint64(1)
                    n_found += 1
                    if n_found == 4:  # four rows per pass: a quarter of the loads and stores of acc
                        s0 = cols[found[0], c0:c1]
                        s1 = cols[found[1], c0:c1]
                        s2 = cols[found[2], c0:c1]
                        s3 = cols[found[3], c0:c1]
                        for q in range(acc.size):
                            acc[q] += (s0[q] + s1[q]) + (s2[q] + s3[q])
                        n_found = 0
            for i in range(n_found):
                src = cols[found[i], c0:c1]
                for q in range(acc.size):
                    acc[q] += src[q]
            a = alpha[o]
            dst = out[o, c0:c1]
            for q in range(acc.size):
                dst[q] = a * (s[q] - 2 * acc[q])
