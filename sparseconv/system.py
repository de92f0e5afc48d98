"""What sparseconv's kernels run with on this machine: the GEMM library, threads, CPU paths, the kernel cache."""

import numba

from . import _blas, _config
from ._kernels import lowp as _lowp

__all__ = ["info"]


def info():
    """A dict of the settings the kernels run with (asking for it loads the GEMM library, as a first kernel would).

    Keys: ``gemm_backend`` ("mkl" or "openblas", ``SPARSECONV_BLAS``),
    ``numba_threads``, ``int8_kernel`` ("vnni" where the CPU has AVX512-VNNI,
    else "portable") and ``kernel_cache`` (:func:`sparseconv._config.cache_dir`,
    ``SPARSECONV_CACHE_DIR``).
    """
    return {"gemm_backend": _blas.backend(), "numba_threads": numba.get_num_threads(),
            "int8_kernel": "vnni" if _lowp.HAS_VNNI else "portable", "kernel_cache": _config.cache_dir()}
