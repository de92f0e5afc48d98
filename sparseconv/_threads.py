"""The threading policy: one thread runtime at a time.

sparseconv's parallel kernels run in numba's thread pool and call BLAS from
inside it. If BLAS also ran its own worker threads, the two pools would
compete for the same cores; on 2-core machines that made a numba kernel
followed by a 2-thread OpenBLAS GEMM about 3x slower than its parts timed
alone (busy-waiting workers of one runtime steal the cores of the other).
So while a kernel runs, the BLAS that the kernels call (SciPy's) is limited
to one thread, through threadpoolctl, and every core belongs to numba; the
previous setting comes back after.

Only that BLAS is touched. NumPy usually carries a BLAS of its own; changing
its thread count wakes its workers, which then busy-wait for about 0.1 s and
slowed the next kernel call up to 30x (measured) when every call did it.
"""

import contextlib
import os

from threadpoolctl import ThreadpoolController

from . import _blas

_limiter = None


def _numpy_dirs():
    import numpy

    pkg = os.path.dirname(os.path.realpath(numpy.__file__))
    return (pkg + os.sep, pkg + ".libs" + os.sep)


def _make_limiter():
    """Controller of the BLAS libraries the kernels may call: all BLAS but NumPy's own copy."""
    controller = ThreadpoolController().select(user_api="blas")
    numpy_dirs = _numpy_dirs()
    mine = [lib for lib in controller.lib_controllers
            if not os.path.realpath(lib.filepath).startswith(numpy_dirs)]
    if mine:  # where NumPy and SciPy share one BLAS, it is limited too
        controller.lib_controllers = mine
    return controller


def blas_single_threaded():
    """Context manager: the kernels' BLAS runs on the calling thread only."""
    global _limiter
    if _blas.backend() == "mkl":  # already in its sequential layer
        return contextlib.nullcontext()
    if _limiter is None:
        _limiter = _make_limiter()
    return _limiter.limit(limits=1)
