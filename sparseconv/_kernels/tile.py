"""A float register tile in LLVM IR: the micro-kernel of convolutions whose groups are too narrow for BLAS.

A GEMM call per group of M <= 8 channels costs more in the call and its
operand packing than the M x M x kH*kW multiply-adds it does. The tile
computes a block of TILE_ROWS output channels x (VECTORS x lanes) output
columns of a grouped conv straight from a padded input band:

    dst[(d0 + r)*ld + q0 + q] = sum_k w[row0 + r, k] * buf[base + offsets[k] + q0 + q]

where k runs over (input channel, tap) and ``offsets[k]`` is where that
channel's tap starts in the band (the shifted-view trick of
:func:`sparseconv._kernels.conv.conv_shifted`). Its TILE_ROWS x VECTORS
accumulators stay in registers for the whole sum over k: per k, VECTORS
loads of the input, TILE_ROWS weight broadcasts and TILE_ROWS x VECTORS
fused multiply-adds, where a loop over columns would load and store an
accumulator per multiply-add.

The vector width is a path, chosen at run time from the CPU's features
like the int8 paths: "avx512" (512-bit), "avx2" (256-bit with FMA),
"portable" (128 bits, multiply then add: every x86-64 CPU has SSE2, and
LLVM lowers the vectors to whatever the CPU has). The path's marker type
selects the width, so each is compiled only where it runs.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .. import _config

#: vector width in bits of each path, best first
FLOAT_PATHS = {"avx512": 512, "avx2": 256, "portable": 128}
#: the scalar type that selects a path's width in :func:`float_tile` (numba specialises on it)
MARKER = {"avx512": np.uint8, "avx2": np.uint16, "portable": np.uint32}
#: output channels and vectors of output columns per tile
TILE_ROWS = 4
VECTORS = 2

_MARKER_PATH = {numba.from_dtype(np.dtype(m)): p for p, m in MARKER.items()}
#: the same, for the Python twins of ``NUMBA_DISABLE_JIT=1`` (which see markers as NumPy scalars)
_MARKER_PATH_PY = {np.dtype(m): p for p, m in MARKER.items()}


def float_path():
    """The widest path the CPU has and ``SPARSECONV_ISA`` allows."""
    level = _config.isa_level()
    return level if level == "avx512" else "avx2" if level in ("avx2", "avxvnni") else "portable"


def tile_cols(path, dtype):
    """Output columns one tile computes on ``path`` for ``dtype``: VECTORS x lanes."""
    return VECTORS * FLOAT_PATHS[path] // (8 * np.dtype(dtype).itemsize)


def splat(builder, value, vty):
    """LLVM IR: a vector of type ``vty`` with every lane ``value`` (a broadcast)."""
    undef = ir.Constant(vty, ir.Undefined)
    lane0 = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(lane0, undef, ir.Constant(ir.VectorType(ir.IntType(32), vty.count), [0] * vty.count))


def accumulate(builder, path, fma, acc, a, b):
    """LLVM IR: acc (an alloca'd vector) += a * b, fused where the path has FMA."""
    if path == "portable":  # no FMA instruction on the baseline: multiply, then add
        new = builder.fadd(builder.load(acc), builder.fmul(a, b))
    else:
        new = builder.call(fma, [a, b, builder.load(acc)])
    builder.store(new, acc)


if numba.config.DISABLE_JIT:

    def float_tile(marker, w, row0, buf, base, offsets, q0, dst, d0, ld):
        """The tile's definition, for ``NUMBA_DISABLE_JIT=1`` (an intrinsic runs only in compiled code)."""
        cols = tile_cols(_MARKER_PATH_PY[np.dtype(type(marker))], buf.dtype)
        for r in range(TILE_ROWS):
            acc = np.zeros(cols, buf.dtype)
            for k in range(offsets.size):
                start = base + offsets[k] + q0
                acc += w[row0 + r, k] * buf[start:start + cols]
            dst[(d0 + r) * ld + q0:(d0 + r) * ld + q0 + cols] = acc


else:

    @intrinsic
    def float_tile(typingctx, marker, w, row0, buf, base, offsets, q0, dst, d0, ld):
        """The tile (module docstring) on the path ``marker``'s type selects.

        w (R, K) and buf, dst (1-D) of one float dtype, offsets (K,) int64;
        row0, base, q0, d0, ld integers. Every load reads cols =
        VECTORS x lanes values from buf, so buf must extend that far past
        the last column asked for; dst gets TILE_ROWS rows of cols values.
        """
        path = _MARKER_PATH.get(marker)
        if path is None or not isinstance(w, types.Array) or w.ndim != 2 or w.layout != "C":
            return None
        flt = w.dtype
        if flt not in (types.float32, types.float64) or buf != types.Array(flt, 1, "C"):
            return None
        if dst != types.Array(flt, 1, "C") or offsets != types.Array(types.int64, 1, "C"):
            return None
        if not all(isinstance(a, types.Integer) for a in (row0, base, q0, d0, ld)):
            return None
        lanes = FLOAT_PATHS[path] // (8 * (4 if flt == types.float32 else 8))

        def codegen(context, builder, signature, args):
            w_arr, b_arr, o_arr, d_arr = (context.make_array(signature.args[i])(context, builder, args[i])
                                          for i in (1, 3, 5, 7))
            i64 = ir.IntType(64)
            row0_, base_, q0_, d0_, ld_ = (context.cast(builder, args[i], signature.args[i], types.int64)
                                           for i in (2, 4, 6, 8, 9))
            ety = context.get_value_type(flt)
            vty = ir.VectorType(ety, lanes)
            n_k = cgutils.unpack_tuple(builder, w_arr.shape, 2)[1]
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * lanes)) for _ in range(VECTORS)]
                    for _ in range(TILE_ROWS)]
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                 f"llvm.fma.v{lanes}f{8 * (4 if flt == types.float32 else 8)}")
            align = 4 if flt == types.float32 else 8
            with cgutils.for_range(builder, n_k) as loop:
                k = loop.index
                start = builder.add(builder.add(builder.load(builder.gep(o_arr.data, [k])), base_), q0_)
                xs = [builder.load(builder.bitcast(builder.gep(b_arr.data, [builder.add(start, ir.Constant(
                    i64, lanes * h))]), vty.as_pointer()), align=align) for h in range(VECTORS)]
                for r in range(TILE_ROWS):
                    at = builder.add(builder.mul(builder.add(row0_, ir.Constant(i64, r)), n_k), k)
                    wv = splat(builder, builder.load(builder.gep(w_arr.data, [at])), vty)
                    for h in range(VECTORS):
                        accumulate(builder, path, fma, accs[r][h], xs[h], wv)
            for r in range(TILE_ROWS):
                row = builder.add(builder.mul(builder.add(d0_, ir.Constant(i64, r)), ld_), q0_)
                for h in range(VECTORS):
                    at = builder.gep(d_arr.data, [builder.add(row, ir.Constant(i64, lanes * h))])
                    builder.store(builder.load(accs[r][h]), builder.bitcast(at, vty.as_pointer()), align=align)
            return context.get_dummy_value()

        return types.void(marker, w, row0, buf, base, offsets, q0, dst, d0, ld), codegen


#: vectors of columns per sparse row tile
ROW_VECTORS = 4


def row_tile_cols(path, dtype):
    """Output columns one :func:`sparse_row_tile` computes on ``path`` for ``dtype``: ROW_VECTORS x lanes."""
    return ROW_VECTORS * FLOAT_PATHS[path] // (8 * np.dtype(dtype).itemsize)


if numba.config.DISABLE_JIT:

    def sparse_row_tile(marker, data, indices, p0, p1, src, ld, q0, dst, d0):
        """The row tile's definition, for ``NUMBA_DISABLE_JIT=1``."""
        cols = row_tile_cols(_MARKER_PATH_PY[np.dtype(type(marker))], src.dtype)
        acc = np.zeros(cols, src.dtype)
        for p in range(p0, p1):
            start = indices[p] * ld + q0
            acc += data[p] * src[start:start + cols]
        dst[d0:d0 + cols] = acc

else:

    @intrinsic
    def sparse_row_tile(typingctx, marker, data, indices, p0, p1, src, ld, q0, dst, d0):
        """dst[d0 + q] = sum_{p0 <= p < p1} data[p] * src[indices[p]*ld + q0 + q], q < ROW_VECTORS x lanes.

        One output row of a sparse (CSR) weight times dense columns: its
        ROW_VECTORS accumulators stay in registers over all the row's
        nonzeros, where a loop over columns loads and stores them per
        nonzero. data, src, dst 1-D of one float dtype; indices 1-D integers.
        """
        path = _MARKER_PATH.get(marker)
        if path is None or not isinstance(data, types.Array) or data.ndim != 1:
            return None
        flt = data.dtype
        if flt not in (types.float32, types.float64) or src != types.Array(flt, 1, "C"):
            return None
        if dst != types.Array(flt, 1, "C") or not isinstance(indices, types.Array) or indices.ndim != 1:
            return None
        if not isinstance(indices.dtype, types.Integer):
            return None
        if not all(isinstance(a, types.Integer) for a in (p0, p1, ld, q0, d0)):
            return None
        bits = 32 if flt == types.float32 else 64
        lanes = FLOAT_PATHS[path] // bits

        def codegen(context, builder, signature, args):
            v_arr, i_arr, s_arr, d_arr = (context.make_array(signature.args[i])(context, builder, args[i])
                                          for i in (1, 2, 5, 8))
            i64 = ir.IntType(64)
            p0_, p1_, ld_, q0_, d0_ = (context.cast(builder, args[i], signature.args[i], types.int64)
                                       for i in (3, 4, 6, 7, 9))
            vty = ir.VectorType(context.get_value_type(flt), lanes)
            accs = [cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * lanes)) for _ in range(ROW_VECTORS)]
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                 f"llvm.fma.v{lanes}f{bits}")
            align = bits // 8
            with cgutils.for_range(builder, builder.sub(p1_, p0_)) as loop:
                p = builder.add(p0_, loop.index)
                col = context.cast(builder, builder.load(builder.gep(i_arr.data, [p])), indices.dtype, types.int64)
                start = builder.add(builder.mul(col, ld_), q0_)
                value = splat(builder, builder.load(builder.gep(v_arr.data, [p])), vty)
                for h in range(ROW_VECTORS):
                    at = builder.gep(s_arr.data, [builder.add(start, ir.Constant(i64, lanes * h))])
                    x = builder.load(builder.bitcast(at, vty.as_pointer()), align=align)
                    accumulate(builder, path, fma, accs[h], x, value)
            for h in range(ROW_VECTORS):
                at = builder.gep(d_arr.data, [builder.add(d0_, ir.Constant(i64, lanes * h))])
                builder.store(builder.load(accs[h]), builder.bitcast(at, vty.as_pointer()), align=align)
            return context.get_dummy_value()

        return types.void(marker, data, indices, p0, p1, src, ld, q0, dst, d0), codegen
