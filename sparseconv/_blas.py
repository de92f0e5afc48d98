"""BLAS GEMM callable from numba kernels.

numba's own ``np.dot`` allocates its result and needs contiguous operands.
The convolution kernels need more: a product of sub-blocks of larger arrays
with explicit leading dimensions, written straight into a caller's buffer,
called from inside a ``prange`` loop. So they call ``sgemm``/``dgemm``
through its address, from one of two libraries:

- ``mkl``: Intel MKL's sequential layer, when the ``mkl`` package is
  installed (``pip install sparseconv[mkl]``); 10-50% faster per core than
  OpenBLAS on the small, thin products of a convolution (measured here);
- ``openblas``: the BLAS that SciPy ships (``scipy.linalg.cython_blas``),
  always there.

``SPARSECONV_BLAS=auto|mkl|openblas`` chooses (default ``auto``: MKL where
found). The kernels call GEMM from their own threads, so the library must
run single-threaded inside each call: MKL is switched to its sequential
layer (process-wide, before its first use; where another user of MKL got
there first, the OpenBLAS path is taken), and OpenBLAS is limited to one
thread around each kernel call (see ``_threads``).

Nothing happens at import: the library is found, loaded and set up the
first time a kernel asks for a GEMM (:func:`backend`, :func:`gemm`), so
``import sparseconv`` loads no MKL and changes no process-wide setting.

The arrays here are row-major; BLAS is column-major. A row-major product
``C = A @ B`` is the column-major product ``C^T = B^T @ A^T``, so the call
passes ``B`` first and swaps ``m`` and ``n``.
"""

import ctypes
import functools
import glob
import os
import sys

import numpy as np
from numba.extending import get_cython_function_address

from ._config import SERIAL_BLAS, jit

_GEMM_PROTO = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))
_MKL_SEQUENTIAL = 1  # MKL_THREADING_SEQUENTIAL in mkl_service.h


def _openblas_addresses():
    return tuple(get_cython_function_address("scipy.linalg.cython_blas", name) for name in ("sgemm", "dgemm"))


def _mkl_addresses():
    """(sgemm, dgemm) addresses of MKL's single dynamic library in its sequential layer, or None."""
    patterns = ["libmkl_rt.so*", "libmkl_rt.*.dylib", "libmkl_rt.dylib"]
    dirs = {os.path.join(p, "lib") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for d in sorted(dirs):
        for pattern in patterns:
            for path in sorted(glob.glob(os.path.join(d, pattern))):
                try:
                    lib = ctypes.CDLL(path)
                    layer = lib.MKL_Set_Threading_Layer(ctypes.c_int(_MKL_SEQUENTIAL))
                except (OSError, AttributeError):
                    continue
                if layer != _MKL_SEQUENTIAL:
                    return None
                return tuple(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value for name in ("sgemm", "dgemm"))
    return None


def _choose():
    choice = os.environ.get("SPARSECONV_BLAS", "auto").strip().lower() or "auto"
    if choice not in ("auto", "mkl", "openblas"):
        raise ValueError(f"SPARSECONV_BLAS must be 'auto', 'mkl' or 'openblas', got {choice!r}")
    if choice != "openblas":
        found = _mkl_addresses()
        if found is not None:
            return "mkl", found
        if choice == "mkl":
            raise ImportError("SPARSECONV_BLAS=mkl but MKL was not found: pip install 'sparseconv[mkl]'")
    return "openblas", _openblas_addresses()


@functools.cache
def _chosen():
    return _choose()


def backend():
    """Which library the kernels' GEMM comes from: "mkl" or "openblas" (chosen, and loaded, on first call)."""
    return _chosen()[0]


def _make_gemm(fn, dtype):
    @jit(**SERIAL_BLAS)
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


@functools.cache
def gemm(dtype):
    """The numba-callable GEMM for float32 or float64 columns, bound to :func:`backend`'s library."""
    address = _chosen()[1][0 if np.dtype(dtype) == np.float32 else 1]
    return _make_gemm(_GEMM_PROTO(address), np.dtype(dtype).type)
