"""BLAS GEMM callable from numba kernels.

numba's own ``np.dot`` allocates its result and needs contiguous operands.
The convolution kernels need more: a product of sub-blocks of larger arrays
with explicit leading dimensions, written straight into a caller's buffer,
called from inside a ``prange`` loop. So they call ``sgemm``/``dgemm`` of the
BLAS that SciPy ships (``scipy.linalg.cython_blas``) through its address.

The arrays here are row-major; BLAS is column-major. A row-major product
``C = A @ B`` is the column-major product ``C^T = B^T @ A^T``, so the call
passes ``B`` first and swaps ``m`` and ``n``.
"""

import ctypes

import numba
import numpy as np
from numba.extending import get_cython_function_address

from ._config import SERIAL

_GEMM_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
_sgemm = _GEMM_PROTO(get_cython_function_address("scipy.linalg.cython_blas", "sgemm"))
_dgemm = _GEMM_PROTO(get_cython_function_address("scipy.linalg.cython_blas", "dgemm"))

_NOT_CACHED = dict(SERIAL, cache=False)


def _make_gemm(fn, dtype):
    @numba.njit(**_NOT_CACHED)
    def gemm(m, n, k, a, lda, b, ldb, c, ldc, beta):
        """``c[:m, :n] = a[:m, :k] @ b[:k, :n] + beta * c`` on flat row-major buffers.

        ``a``, ``b`` and ``c`` are 1-D views whose first element is the
        block's top-left entry; ``lda``, ``ldb``, ``ldc`` are row strides.
        """
        ints = np.empty(6, np.int32)
        ints[0] = n
        ints[1] = m
        ints[2] = k
        ints[3] = ldb
        ints[4] = lda
        ints[5] = ldc
        scal = np.empty(2, dtype)
        scal[0] = 1.0
        scal[1] = beta
        trans = np.empty(1, np.uint8)
        trans[0] = 78  # 'N'
        fn(trans.ctypes, trans.ctypes, ints[0:].ctypes, ints[1:].ctypes, ints[2:].ctypes,
           scal[0:].ctypes, b.ctypes, ints[3:].ctypes, a.ctypes, ints[4:].ctypes,
           scal[1:].ctypes, c.ctypes, ints[5:].ctypes)

    return gemm


sgemm = _make_gemm(_sgemm, np.float32)
dgemm = _make_gemm(_dgemm, np.float64)
