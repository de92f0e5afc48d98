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
#: Columns per panel of packed activations (a multiple of LANES and of SIGN_LANES).
PANEL = 256
#: Columns whose signs :func:`sign_tile` packs at once (one vector of floats).
SIGN_LANES = 8


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

    def sign_tile(cols, k0, nb, j, flat, o):
        neg = cols[k0:k0 + nb, j:j + SIGN_LANES] < 0  # (nb, SIGN_LANES)
        weights = np.left_shift(np.uint64(1), np.arange(nb, dtype=np.uint64))
        flat[o:o + SIGN_LANES] = (neg.astype(np.uint64) * weights[:, None]).sum(axis=0, dtype=np.uint64)

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
    def sign_tile(typingctx, cols, k0, nb, j, flat, o):
        """flat[o + t] = sum over b < nb of (cols[k0 + b, j + t] < 0) << b, t < SIGN_LANES: one word per column.

        In LLVM IR: the SIGN_LANES words stay in one vector register while
        the nb rows are compared with 0 (ordered: NaN and -0.0 are not
        negative, as in NumPy), shifted into place and or-ed in; each word is
        stored once. cols (K, J) C-contiguous float32 or float64, flat a 1-D
        uint64; the caller keeps j + SIGN_LANES <= J.
        """
        if not (isinstance(cols, types.Array) and cols.ndim == 2 and cols.layout == "C"
                and cols.dtype in (types.float32, types.float64)) or flat != types.Array(types.uint64, 1, "C"):
            return None
        if not all(isinstance(t, types.Integer) for t in (k0, nb, j, o)):
            return None

        def codegen(context, builder, signature, args):
            c_arr = context.make_array(signature.args[0])(context, builder, args[0])
            o_arr = context.make_array(signature.args[4])(context, builder, args[4])
            k_val, nb_val, j_val, o_val = (context.cast(builder, args[i], signature.args[i], types.int64)
                                           for i in (1, 2, 3, 5))
            i64, i32 = ir.IntType(64), ir.IntType(32)
            fty = ir.VectorType(context.get_value_type(signature.args[0].dtype), SIGN_LANES)
            uty = ir.VectorType(i64, SIGN_LANES)
            n_cols = cgutils.unpack_tuple(builder, c_arr.shape, 2)[1]
            acc = cgutils.alloca_once_value(builder, ir.Constant(uty, [0] * SIGN_LANES))
            undef = ir.Constant(uty, ir.Undefined)
            broadcast = ir.Constant(ir.VectorType(i32, SIGN_LANES), [0] * SIGN_LANES)
            with cgutils.for_range(builder, nb_val) as loop:
                b = loop.index
                at = builder.gep(c_arr.data, [builder.add(builder.mul(builder.add(k_val, b), n_cols), j_val)])
                v = builder.load(builder.bitcast(at, fty.as_pointer()), align=4)
                negative = builder.zext(builder.fcmp_ordered("<", v, ir.Constant(fty, [0.0] * SIGN_LANES)), uty)
                shift = builder.shuffle_vector(builder.insert_element(undef, b, ir.Constant(i32, 0)), undef, broadcast)
                builder.store(builder.or_(builder.load(acc), builder.shl(negative, shift)), acc)
            dst = builder.gep(o_arr.data, [o_val])
            builder.store(builder.load(acc), builder.bitcast(dst, uty.as_pointer()), align=8)
            return context.get_dummy_value()

        return types.void(cols, k0, nb, j, flat, o), codegen

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


@jit(**PARALLEL)
def pack_columns(cols, out):
    """Pack the signs of the columns of cols (n, J) into panels: out (n_panels, n_words, PANEL).

    out[p, w, q] bit b = (cols[64*w + b, p*PANEL + q] < 0); columns past J
    are all zero bits. A panel's words for one column block are contiguous
    rows of PANEL, so :func:`xnor_gemm` streams through them without the
    cache-set conflicts that a long row stride would cause. One task per
    (word, panel), done SIGN_LANES columns at a time by :func:`sign_tile`
    (the last few columns of cols one by one); consecutive tasks read along
    the same 64 rows.
    """
    n, n_cols = cols.shape
    n_panels, n_words, panel = out.shape
    flat = out.reshape(-1)  # (n_panels * n_words * PANEL,)
    for task in numba.prange(n_words * n_panels):
        w = task // n_panels
        p = task - w * n_panels
        j0 = p * panel
        m = min(panel, n_cols - j0)
        nb = min(64, n - 64 * w)
        base = (p * n_words + w) * panel
        whole = m - m % SIGN_LANES
        for q in range(0, whole, SIGN_LANES):
            sign_tile(cols, 64 * w, nb, j0 + q, flat, base + q)
        for q in range(whole, panel):
            word = np.uint64(0)
            if q < m:
                for b in range(nb):
                    if cols[64 * w + b, j0 + q] < 0:
                        word |= np.uint64(1) << np.uint64(b)
            flat[base + q] = word


@jit(**PARALLEL)
def xnor_gemm(wbits, xbits, n, factor, out):
    """out[o, j] = factor[o] * (n - 2 popcount(wbits[o] XOR column j of xbits)) = factor[o] * (sign(W) @ sign(X))[o, j].

    wbits (R, n_words) with R >= C_out a multiple of ROWS (padding rows are
    ignored), xbits (n_panels, n_words, PANEL) from :func:`pack_columns`;
    factor (C_out,) int32 ones for the exact int32 dot products into an int32
    out (C_out, J), or the float scales for the scaled product straight into
    a float out. Tasks are (ROWS weight rows) x (panel), done in ROWS x LANES
    register tiles (:func:`xnor_tile`).
    """
    c_out, n_cols = out.shape
    n_panels, _, panel = xbits.shape
    row_blocks = wbits.shape[0] // ROWS
    for task in numba.prange(row_blocks * n_panels):
        o0 = (task % row_blocks) * ROWS
        p = task // row_blocks
        block = xbits[p]
        res = np.empty((ROWS, LANES), np.uint64)
        rows = min(ROWS, c_out - o0)
        for q in range(0, min(panel, n_cols - p * panel), LANES):
            xnor_tile(wbits, o0, block, q, res)
            j = p * panel + q
            lanes = min(LANES, n_cols - j)
            for r in range(rows):
                f = factor[o0 + r]
                for k in range(lanes):
                    out[o0 + r, j + k] = (n - 2 * np.int64(res[r, k])) * f


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
