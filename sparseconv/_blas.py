"""BLAS GEMM callable from numba kernels.

numba's own ``np.dot`` allocates its result and needs contiguous operands.
The convolution kernels need more: a product of sub-blocks of larger arrays
with explicit leading dimensions, written straight into a caller's buffer,
called from inside a ``prange`` loop. So they call ``sgemm``/``dgemm``
through its address, from one of two libraries:

- ``mkl``: Intel MKL's sequential layer, when the ``mkl`` package is
  installed (``pip install sparseconv[mkl]``); 10-50% faster per core than
  OpenBLAS on the small, thin products of a convolution on Intel CPUs and
  on an AVX2 AMD EPYC (Zen 3) (measured);
- ``openblas``: the BLAS that SciPy ships (``scipy.linalg.cython_blas``),
  always there.

``SPARSECONV_BLAS=auto|mkl|openblas`` chooses (default ``auto``: MKL where
found, except on an AMD CPU with AVX-512: on an AMD EPYC Zen 4 the conv
kernels ran faster with OpenBLAS on 12 of 14 layers of two ``bench conv``
runs, by up to 30%; :func:`reason` says which rule chose). The kernels
call GEMM from their own threads, so the library must
run single-threaded inside each call: MKL is switched to its sequential
layer (process-wide, before its first use; where another user of MKL got
there first, the OpenBLAS path is taken), and OpenBLAS is limited to one
thread around each kernel call (see ``_threads``).

Nothing happens at import: the library is found, loaded and set up the
first time a kernel asks for a GEMM (:func:`backend`, :func:`address`), so
``import sparseconv`` loads no MKL and changes no process-wide setting.

The arrays here are row-major; BLAS is column-major. A row-major product
``C = A @ B`` is the column-major product ``C^T = B^T @ A^T``, so the call
passes ``B`` first and swaps ``m`` and ``n``; ``C = A @ B^T`` with B stored
row-major (n, k) is the same call with B's op set to transpose.
"""

import ctypes
import functools
import glob
import os
import sys

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import get_cython_function_address, intrinsic

from . import _config
from ._config import SERIAL, jit

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


def _amd_with_avx512():
    """Whether the kernels run with AVX-512 on an AMD CPU (llvmlite names AMD's "znver*").

    The features are those the kernels are compiled for (an ``--isa avx2``
    emulation has none of AVX-512), the vendor the host's.
    """
    import llvmlite.binding as llvm

    return "avx512f" in _config.cpu_features() and llvm.get_host_cpu_name().startswith("znver")


def _choose():
    """(backend, (sgemm, dgemm) addresses, reason)."""
    choice = os.environ.get("SPARSECONV_BLAS", "auto").strip().lower() or "auto"
    if choice not in ("auto", "mkl", "openblas"):
        raise ValueError(f"SPARSECONV_BLAS must be 'auto', 'mkl' or 'openblas', got {choice!r}")
    if choice == "auto" and _amd_with_avx512():
        return "openblas", _openblas_addresses(), "auto: an AMD CPU with AVX-512, where OpenBLAS measured faster"
    if choice != "openblas":
        found = _mkl_addresses()
        if found is not None:
            return "mkl", found, "auto: MKL found" if choice == "auto" else "SPARSECONV_BLAS=mkl"
        if choice == "mkl":
            raise ImportError("SPARSECONV_BLAS=mkl but MKL was not found: pip install 'sparseconv[mkl]'")
        return "openblas", _openblas_addresses(), "auto: MKL not installed"
    return "openblas", _openblas_addresses(), "SPARSECONV_BLAS=openblas"


@functools.cache
def _chosen():
    return _choose()


def backend():
    """Which library the kernels' GEMM comes from: "mkl" or "openblas" (chosen, and loaded, on first call)."""
    return _chosen()[0]


def reason():
    """Why :func:`backend` is the one it is: the setting of ``SPARSECONV_BLAS`` and the rule ``auto`` took."""
    return _chosen()[2]


if numba.config.DISABLE_JIT:

    def _call_gemm(fn, *pointers):
        """The call below through ctypes, for ``NUMBA_DISABLE_JIT=1`` (an intrinsic runs only in compiled code)."""
        ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(fn)(*pointers)

else:

    @intrinsic
    def _call_gemm(typingctx, fn, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12):
        """Call the Fortran ``?gemm`` at address ``fn`` with 13 pointer arguments, all given as integers.

        The address is an argument, not a constant of the compiled code, so
        the kernels that call GEMM can be cached on disk like the others.
        """
        sig = types.void(fn, a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12)

        def codegen(context, builder, signature, args):
            ptr = ir.IntType(8).as_pointer()
            fnty = ir.FunctionType(ir.VoidType(), [ptr] * 13)
            target = builder.inttoptr(args[0], fnty.as_pointer())
            builder.call(target, [builder.inttoptr(v, ptr) for v in args[1:]])
            return context.get_dummy_value()

        return sig, codegen


@jit(**SERIAL)
def gemm(fn, m, n, k, a, lda, b, ldb, c, ldc, beta):
    """``c[:m, :n] = a[:m, :k] @ b[:k, :n] + beta * c`` on flat row-major buffers, by the GEMM at ``fn``.

    ``fn`` is :func:`address`'s integer for the buffers' dtype; ``a``, ``b``
    and ``c`` are 1-D views whose first element is the block's top-left
    entry; ``lda``, ``ldb``, ``ldc`` are row strides.
    """
    return _gemm(fn, False, m, n, k, a, lda, b, ldb, c, ldc, beta)


@jit(**SERIAL)
def gemm_nt(fn, m, n, k, a, lda, b, ldb, c, ldc, beta):
    """``c[:m, :n] = a[:m, :k] @ b[:n, :k].T + beta * c``: as :func:`gemm`, with ``b`` stored (n, k)."""
    return _gemm(fn, True, m, n, k, a, lda, b, ldb, c, ldc, beta)


@jit(**SERIAL)
def _gemm(fn, b_transposed, m, n, k, a, lda, b, ldb, c, ldc, beta):
    ints = np.empty(6, np.int32)  # n, m, k, ldb, lda, ldc: Fortran passes every argument by address
    ints[0] = n
    ints[1] = m
    ints[2] = k
    ints[3] = ldb
    ints[4] = lda
    ints[5] = ldc
    scal = np.empty(2, c.dtype)  # alpha, beta
    scal[0] = 1.0
    scal[1] = beta
    trans = np.empty(2, np.uint8)  # op of b (the Fortran call's first operand), op of a
    trans[0] = 84 if b_transposed else 78  # 'T' or 'N'
    trans[1] = 78
    ip, sp, tp = ints.ctypes.data, scal.ctypes.data, trans.ctypes.data
    _call_gemm(fn, tp, tp + 1, ip, ip + 4, ip + 8, sp, b.ctypes.data, ip + 12, a.ctypes.data, ip + 16,
               sp + scal.itemsize, c.ctypes.data, ip + 20)
    return ints[0] + trans[0]  # the buffers are used after the call, so they live through it


def address(dtype):
    """The address of :func:`backend`'s ``sgemm`` (float32) or ``dgemm`` (float64), for :func:`gemm`."""
    return _chosen()[1][0 if np.dtype(dtype) == np.float32 else 1]
