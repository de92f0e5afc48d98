"""The direct convolution's micro-kernel in LLVM IR: output pixels x a block of output channels.

With x zero-padded to (N, C_in, H_p, W_p) and laid out flat, the input
value that output pixel q reads at tap t and channel c is
``xp[pix[q] + koff[t] + c*cs]``: ``pix[q]`` is where pixel q's receptive
field starts in its image's first channel (row h*sH, column w*sW),
``koff[t]`` is where tap t = (i, j) sits in it (i*dH*W_p + j*dW), and
cs = H_p*W_p is the step from one channel's plane to the next. The tile
computes

    dst[d0 + p*B + o] = sum_{t, c} wpk[wrow0 + t*C_in + c, o] * xp[pix[p0 + p] + koff[t] + c*cs]

for PIXELS[path] pixels p and a block of B = VECTORS x lanes output
channels o, its PIXELS x VECTORS accumulators (vectors of output channels)
in registers over every tap and input channel: per (t, c), VECTORS vector
loads of the weight and one broadcast of x per pixel, each used by
VECTORS fused multiply-adds. The weight is packed per block of B output
channels as K = kH*kW*C_in rows in (i, j, c) order x B: one block's rows
are contiguous, and a tap's rows are read in order (where the hardware
prefetcher follows them; rows kH*kW apart, in the weight's own (c, i, j)
order, ran the tile 1.6-1.7x slower on 512ch 7x7).

Unlike the shifted tile of :mod:`.tile` (vectors over output columns), no
column is computed and dropped: the pixels of a tile may lie in different
rows or images, with any stride or dilation, since each has its own
``pix`` entry. Vectors over output channels and broadcasts of the input
are how oneDNN's and MLAS's direct convolutions work; they read a
blocked or channels-last input, this tile reads NCHW planes (a tile's
pixels at one channel and tap are neighbours in one row), so x needs
only a zero-padded copy, not a transposed one.

The widths are paths chosen at run time as in :mod:`.tile` (the same
marker types): 512-bit vectors and 12 pixels (24 accumulators of 32
registers), 256-bit with FMA and 6 pixels (12 of 16), or 128-bit (SSE2,
multiply then add) and 6 pixels.
"""

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

from .tile import _MARKER_PATH, _MARKER_PATH_PY, FLOAT_PATHS, accumulate, splat

#: output pixels per tile, by path
PIXELS = {"avx512": 12, "avx2": 6, "portable": 6}
#: vectors of output channels per tile
VECTORS = 2


def block_channels(path, dtype):
    """Output channels one tile computes on ``path`` for ``dtype`` (B): VECTORS x lanes."""
    return VECTORS * FLOAT_PATHS[path] // (8 * np.dtype(dtype).itemsize)


if numba.config.DISABLE_JIT:

    def pixel_tile(marker, wpk, wrow0, xp, pix, p0, koff, c_in, cs, dst, d0):
        """The tile's definition, for ``NUMBA_DISABLE_JIT=1`` (an intrinsic runs only in compiled code)."""
        path = _MARKER_PATH_PY[np.dtype(type(marker))]
        width = wpk.shape[1]
        for p in range(PIXELS[path]):
            acc = np.zeros(width, wpk.dtype)
            for t in range(koff.size):
                start = pix[p0 + p] + koff[t]
                acc += xp[start:start + c_in * cs:cs] @ wpk[wrow0 + t * c_in:wrow0 + (t + 1) * c_in]
            dst[d0 + p * width:d0 + (p + 1) * width] = acc

else:

    @intrinsic
    def pixel_tile(typingctx, marker, wpk, wrow0, xp, pix, p0, koff, c_in, cs, dst, d0):
        """The tile (module docstring) on the path ``marker``'s type selects.

        wpk (R, B), xp and dst (1-D) of one float dtype, B = VECTORS x
        lanes; pix and koff int64 (pix must hold PIXELS entries from p0);
        wrow0, p0, c_in, cs, d0 integers. dst gets PIXELS rows of B values.
        """
        path = _MARKER_PATH.get(marker)
        if path is None or not isinstance(wpk, types.Array) or wpk.ndim != 2 or wpk.layout != "C":
            return None
        flt = wpk.dtype
        if flt not in (types.float32, types.float64) or xp != types.Array(flt, 1, "C"):
            return None
        if dst != types.Array(flt, 1, "C"):
            return None
        if pix != types.Array(types.int64, 1, "C") or koff != types.Array(types.int64, 1, "C"):
            return None
        if not all(isinstance(a, types.Integer) for a in (wrow0, p0, c_in, cs, d0)):
            return None
        bits = 32 if flt == types.float32 else 64
        lanes = FLOAT_PATHS[path] // bits
        pixels = PIXELS[path]

        def codegen(context, builder, signature, args):
            w_arr, x_arr, pix_arr, k_arr, d_arr = (context.make_array(signature.args[i])(context, builder, args[i])
                                                   for i in (1, 3, 4, 6, 9))
            i64 = ir.IntType(64)
            wrow0_, p0_, cin_, cs_, d0_ = (context.cast(builder, args[i], signature.args[i], types.int64)
                                           for i in (2, 5, 7, 8, 10))
            vty = ir.VectorType(context.get_value_type(flt), lanes)
            width = ir.Constant(i64, VECTORS * lanes)
            n_taps = cgutils.unpack_tuple(builder, k_arr.shape, 1)[0]
            accs = [[cgutils.alloca_once_value(builder, ir.Constant(vty, [0.0] * lanes)) for _ in range(VECTORS)]
                    for _ in range(pixels)]
            fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                                 f"llvm.fma.v{lanes}f{bits}")
            align = bits // 8
            with cgutils.for_range(builder, n_taps) as taps:
                tap = builder.load(builder.gep(k_arr.data, [taps.index]))
                # where each pixel's value in channel 0 sits for this tap
                starts = [builder.gep(x_arr.data, [builder.add(tap, builder.load(builder.gep(
                    pix_arr.data, [builder.add(p0_, ir.Constant(i64, p))])))]) for p in range(pixels)]
                w_tap = builder.gep(w_arr.data, [builder.mul(builder.add(wrow0_, builder.mul(taps.index, cin_)),
                                                             width)])
                with cgutils.for_range(builder, cin_) as chans:
                    c = chans.index
                    plane = builder.mul(c, cs_)
                    w_row = builder.gep(w_tap, [builder.mul(c, width)])
                    ws = [builder.load(builder.bitcast(builder.gep(w_row, [ir.Constant(i64, lanes * h)]),
                                                       vty.as_pointer()), align=align) for h in range(VECTORS)]
                    for p in range(pixels):
                        value = splat(builder, builder.load(builder.gep(starts[p], [plane])), vty)
                        for h in range(VECTORS):
                            accumulate(builder, path, fma, accs[p][h], ws[h], value)
            for p in range(pixels):
                for h in range(VECTORS):
                    at = builder.gep(d_arr.data, [builder.add(d0_, ir.Constant(i64, (p * VECTORS + h) * lanes))])
                    builder.store(builder.load(accs[p][h]), builder.bitcast(at, vty.as_pointer()), align=align)
            return context.get_dummy_value()

        return types.void(marker, wpk, wrow0, xp, pix, p0, koff, c_in, cs, dst, d0), codegen
