"""Triton kernels for the IGC modules: IGCV1 in one kernel, and a grouped 1x1 conv that reads and writes
its channels through an index (a channel shuffle folded in, no copy).

Imported only when a module runs with ``backend="fused"``. On a CUDA tensor
the kernels compile for the GPU; on the CPU they run in Triton's interpreter
when ``TRITON_INTERPRET=1`` was set before triton was first imported (Triton
reads it when it defines a function, its own ``tl.sum`` included): that is
how the tests check them without a GPU. ``_ops`` wraps each launch in an
``autograd.Function`` whose backward runs the composed torch ops (one
recomputation of the forward).
"""

import torch
import triton
import triton.language as tl
from triton.runtime.interpreter import InterpretedFunction


@triton.jit
def _igcv1_kernel(x_ptr, wp_ptr, ws_ptr, y_ptr, H, W, H_out, W_out, sh, sw, top, left, dh, dw,
                  L: tl.constexpr, M: tl.constexpr, KH: tl.constexpr, KW: tl.constexpr, BLOCK_L: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, ACC: tl.constexpr,
                  DOT: tl.constexpr, USE_DOT: tl.constexpr, PRECISION: tl.constexpr):
    # One program: image n, BLOCK_P output pixels, the channels m of one block of BLOCK_M in every group.
    # Primary (group i, an implicit GEMM over K = (c, ky, kx)):
    #   z_i[m, p] = sum_{c, ky, kx} Wp[i*M + m, c, ky, kx] x[i*M + c, tap(p)]
    # Secondary (group m mixes the m-th channel of every primary group):
    #   y[l*M + m, p] = sum_i Ws[m*L + l, i] z_i[m, p]
    # The two shuffles of IGCV1 are this choice of indices: z never leaves the program.
    n_pblocks = (H_out * W_out + BLOCK_P - 1) // BLOCK_P
    n = tl.program_id(0) // n_pblocks
    pb = tl.program_id(0) % n_pblocks
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)   # (BLOCK_M,) channel within a group
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)                 # (BLOCK_P,) output pixel
    l_ = tl.arange(0, BLOCK_L)                               # (BLOCK_L,) secondary output
    cc = tl.arange(0, BLOCK_C)                               # (BLOCK_C,) input channel within a chunk
    valid_m = m < M
    valid_p = p < H_out * W_out
    valid_l = l_ < L
    oh = p // W_out
    ow = p % W_out
    x_img = x_ptr + n.to(tl.int64) * (L * M) * H * W
    out = tl.zeros((BLOCK_L, BLOCK_M, BLOCK_P), dtype=ACC)
    for i in range(L):
        z = tl.zeros((BLOCK_M, BLOCK_P), dtype=ACC)
        for ky in tl.static_range(KH):
            ih = oh * sh - top + ky * dh
            for kx in tl.static_range(KW):
                iw = ow * sw - left + kx * dw
                inside = valid_p & (ih >= 0) & (ih < H) & (iw >= 0) & (iw < W)  # zero padding
                for c0 in range(0, M, BLOCK_C):
                    c = c0 + cc
                    valid_c = c < M
                    wv = tl.load(wp_ptr + (((i * M + m[:, None]) * M + c[None, :]) * KH + ky) * KW + kx,
                                 mask=valid_m[:, None] & valid_c[None, :], other=0.0)        # (BLOCK_M, BLOCK_C)
                    xv = tl.load(x_img + ((i * M + c) * H * W)[:, None] + (ih * W + iw)[None, :],
                                 mask=valid_c[:, None] & inside[None, :], other=0.0)         # (BLOCK_C, BLOCK_P)
                    if USE_DOT:
                        z = tl.dot(wv.to(DOT), xv.to(DOT), z, input_precision=PRECISION)
                    else:
                        z += tl.sum(wv.to(ACC)[:, :, None] * xv.to(ACC)[None, :, :], axis=1)
        s = tl.load(ws_ptr + (m[None, :] * L + l_[:, None]) * L + i,
                    mask=valid_l[:, None] & valid_m[None, :], other=0.0).to(ACC)              # (BLOCK_L, BLOCK_M)
        out += s[:, :, None] * z[None, :, :]                                       # (BLOCK_L, BLOCK_M, BLOCK_P)
    y_img = y_ptr + n.to(tl.int64) * (L * M) * H_out * W_out
    chan = l_[:, None, None] * M + m[None, :, None]                                         # (BLOCK_L, BLOCK_M, 1)
    tl.store(y_img + chan * H_out * W_out + p[None, None, :], out.to(y_ptr.dtype.element_ty),
             mask=valid_l[:, None, None] & valid_m[None, :, None] & valid_p[None, None, :])


@triton.jit
def _pointwise_kernel(x_ptr, w_ptr, y_ptr, in_ptr, out_ptr, C_in, C_out, HW, cin_g, cout_g,
                      HAS_IN: tl.constexpr, HAS_OUT: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_K: tl.constexpr,
                      BLOCK_P: tl.constexpr, ACC: tl.constexpr, DOT: tl.constexpr, USE_DOT: tl.constexpr,
                      PRECISION: tl.constexpr):
    # One program: image n, BLOCK_P pixels, BLOCK_O output channels of one group g:
    # y[out(g*cout_g + o), p] = sum_k W[g*cout_g + o, k] x[in(g*cin_g + k), p]
    # with in(j) = in_idx[j] and out(o) = out_idx[o] when given (a permutation read or written by index).
    n_pblocks = (HW + BLOCK_P - 1) // BLOCK_P
    n = tl.program_id(0) // n_pblocks
    pb = tl.program_id(0) % n_pblocks
    n_oblocks = (cout_g + BLOCK_O - 1) // BLOCK_O
    g = tl.program_id(1) // n_oblocks
    o = (tl.program_id(1) % n_oblocks) * BLOCK_O + tl.arange(0, BLOCK_O)   # (BLOCK_O,) within the group
    p = pb * BLOCK_P + tl.arange(0, BLOCK_P)                                # (BLOCK_P,)
    valid_o = o < cout_g
    valid_p = p < HW
    x_img = x_ptr + n.to(tl.int64) * C_in * HW
    acc = tl.zeros((BLOCK_O, BLOCK_P), dtype=ACC)
    for k0 in range(0, cin_g, BLOCK_K):
        k = k0 + tl.arange(0, BLOCK_K)
        valid_k = k < cin_g
        chan = g * cin_g + k
        if HAS_IN:
            chan = tl.load(in_ptr + chan, mask=valid_k, other=0)
        wv = tl.load(w_ptr + (g * cout_g + o)[:, None] * cin_g + k[None, :],
                     mask=valid_o[:, None] & valid_k[None, :], other=0.0)                 # (BLOCK_O, BLOCK_K)
        xv = tl.load(x_img + chan[:, None].to(tl.int64) * HW + p[None, :],
                     mask=valid_k[:, None] & valid_p[None, :], other=0.0)                 # (BLOCK_K, BLOCK_P)
        if USE_DOT:
            acc = tl.dot(wv.to(DOT), xv.to(DOT), acc, input_precision=PRECISION)  # 16-bit inputs stay 16-bit
        else:
            acc += tl.sum(wv.to(ACC)[:, :, None] * xv.to(ACC)[None, :, :], axis=1)
    chan_out = g * cout_g + o
    if HAS_OUT:
        chan_out = tl.load(out_ptr + chan_out, mask=valid_o, other=0)
    y_img = y_ptr + n.to(tl.int64) * C_out * HW
    tl.store(y_img + chan_out[:, None].to(tl.int64) * HW + p[None, :], acc.to(y_ptr.dtype.element_ty),
             mask=valid_o[:, None] & valid_p[None, :])


#: whether the kernels above, and Triton's own functions they call (tl.sum), run in Triton's interpreter (CPU
#: tensors) rather than compiled for the GPU: TRITON_INTERPRET=1 was set before triton was first imported
INTERPRET = isinstance(_igcv1_kernel, InterpretedFunction) and isinstance(tl.sum, InterpretedFunction)


#: the tensor-core input types a dot keeps (accumulating in float32); other inputs are converted to the accumulator's
_DOT = {torch.bfloat16: tl.bfloat16, torch.float16: tl.float16}


def _acc(dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _precision(dtype):
    """TF32 for float32 products where torch lets cuDNN's convs use it (its default), as the composed path does."""
    return "tf32" if dtype == torch.float32 and torch.backends.cudnn.allow_tf32 and not INTERPRET else "ieee"


def _use_dot(dtype):
    """tl.dot on tensor cores; float64 takes plain FMAs (Triton's float64 dot depends on its version and GPU)."""
    return dtype != torch.float64


def _pow2(n, lo=1):
    return max(lo, triton.next_power_of_2(int(n)))


def igcv1_forward(x, primary, secondary, L, M, g):
    """The fused IGCV1 kernel on contiguous tensors: x (N, L*M, H, W) -> y (N, L*M, H_out, W_out); g the geometry."""
    n = x.shape[0]
    kh, kw = primary.shape[2:]
    y = x.new_empty((n, L * M, g.h_out, g.w_out))
    use_dot = _use_dot(x.dtype)
    lo = 16 if use_dot else 1  # tl.dot's smallest tile
    block_l = _pow2(L)
    block_m, block_c = min(64 if use_dot else 16, _pow2(M, lo)), min(32 if use_dot else 8, _pow2(M, lo))
    # out holds BLOCK_L * BLOCK_M * BLOCK_P accumulators: at most 8192 (float64's 3-D sums far fewer). BLOCK_P
    # stays <= 64: at 128 with BLOCK_M = 32, Triton's pipelined loads need more shared memory than an H200 has.
    block_p = max(16, min(64, _pow2(g.h_out * g.w_out), 8192 // (block_l * block_m))) if use_dot else 16
    grid = (n * triton.cdiv(g.h_out * g.w_out, block_p), triton.cdiv(M, block_m))
    _igcv1_kernel[grid](x, primary, secondary, y, g.h, g.w, g.h_out, g.w_out, g.sh, g.sw, g.top, g.left, g.dh, g.dw,
                        L=L, M=M, KH=kh, KW=kw, BLOCK_L=block_l, BLOCK_M=block_m, BLOCK_C=block_c, BLOCK_P=block_p,
                        ACC=_acc(x.dtype), DOT=_DOT.get(x.dtype, _acc(x.dtype)), USE_DOT=use_dot,
                        PRECISION=_precision(x.dtype))
    return y


def pointwise_forward(x, weight, groups, in_index, out_index):
    """The grouped 1x1 kernel on contiguous tensors: y[:, out_index[o]] = conv1x1(x[:, in_index], weight)[:, o]."""
    n, c_in, h, w = x.shape
    c_out, cin_g = weight.shape[:2]
    cout_g = c_out // groups
    y = x.new_empty((n, c_out, h, w))
    use_dot = _use_dot(x.dtype)
    block_o, block_k, block_p = min(64, _pow2(cout_g, 16)), min(32, _pow2(cin_g, 16)), 64 if use_dot else 16
    grid = (n * triton.cdiv(h * w, block_p), groups * triton.cdiv(cout_g, block_o))
    _pointwise_kernel[grid](x, weight, y, x if in_index is None else in_index, x if out_index is None else out_index,
                            c_in, c_out, h * w, cin_g, cout_g, HAS_IN=in_index is not None,
                            HAS_OUT=out_index is not None, BLOCK_O=block_o, BLOCK_K=block_k, BLOCK_P=block_p,
                            ACC=_acc(x.dtype), DOT=_DOT.get(x.dtype, _acc(x.dtype)), USE_DOT=use_dot,
                            PRECISION=_precision(x.dtype))
    return y
