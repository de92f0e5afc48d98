"""What sparseconv's kernels run with on this machine: the CPU, the paths its features select, the GEMM library,
threads, the kernel cache."""

import os
import platform

import numba

from . import _blas, _config, registry
from ._kernels import lowp as _lowp

__all__ = ["cpu_model", "info"]

#: the CPU features (llvmlite's names) some kernel path depends on
FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512vnni", "avx512vpopcntdq", "avxvnni",
            "amx-int8")


def cpu_model():
    """The CPU's name (``/proc/cpuinfo``'s model name where there is one), else the platform's word for it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def info():
    """A dict of the settings the kernels run with (asking for it loads the GEMM library, as a first kernel would).

    Keys: ``cpu`` (:func:`cpu_model`), ``machine``, ``cpu_count``,
    ``features`` (each of :data:`FEATURES`: present or not), ``isa_level``
    (``sparseconv._config.isa_level``: the highest of "portable", "avx2",
    "avx512" the CPU has, lowered by ``$SPARSECONV_ISA``), ``isa_override``
    (that variable, or None), ``gemm_backend`` ("mkl" or "openblas",
    ``SPARSECONV_BLAS``), ``numba_threads``, ``int8_kernel`` ("vnni" where
    the CPU has AVX512-VNNI and the level allows it, else "portable"),
    ``xnor_popcount`` (how the XNOR kernel counts bits), ``methods`` (per
    operator class of each family, the method ``conv2d`` runs by default)
    and ``kernel_cache`` (:func:`sparseconv._config.cache_dir`,
    ``SPARSECONV_CACHE_DIR``).
    """
    features = _config.cpu_features()
    # numba compiles for the host CPU whatever SPARSECONV_ISA says (NUMBA_CPU_NAME changes that)
    popcount = ("Python (JIT off)" if not features else "vpopcntdq" if "avx512vpopcntdq" in features else
                "LLVM's ctpop sequence (no VPOPCNTDQ)")
    return {"cpu": cpu_model(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "features": {f: f in features for f in FEATURES}, "isa_level": _config.isa_level(),
            "isa_override": os.environ.get("SPARSECONV_ISA") or None,
            "gemm_backend": _blas.backend(), "numba_threads": numba.get_num_threads(),
            "int8_kernel": "vnni" if _lowp.has_vnni() else "portable", "xnor_popcount": popcount,
            "methods": {f"{f.name}: {cls.__name__}": cls.methods[0] for f in registry.families()
                        for cls in f.operators if len(cls.methods) > 1},
            "kernel_cache": _config.cache_dir()}
