"""The threading policy: one thread runtime at a time.

sparseconv's parallel kernels run in numba's thread pool and call BLAS from
inside it. If BLAS also ran its own worker threads, the two pools would
compete for the same cores; on 2-core machines that made a numba kernel
followed by a 2-thread OpenBLAS GEMM about 3x slower than its parts timed
alone (busy-waiting workers of one runtime steal the cores of the other).
So while a kernel runs, BLAS is limited to one thread (through threadpoolctl)
and every core belongs to numba; the previous BLAS setting comes back after.
"""

from threadpoolctl import ThreadpoolController

_controller = None


def blas_single_threaded():
    """Context manager: BLAS libraries run on the calling thread only."""
    global _controller
    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas")
