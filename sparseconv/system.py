"""What sparseconv's kernels run with on this machine: the CPU, the paths its features select, the GEMM library,
threads, the kernel cache, the memory bandwidth."""

import os
import platform
import time

import numba
import numpy as np

from . import _blas, _config, _validation, registry
from ._kernels import bits as _bits
from ._kernels import lowp as _lowp
from ._kernels import stream as _stream
from ._kernels import tile as _tile

__all__ = ["cpu_model", "emulation_env", "info", "stream_triad"]

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
    ``features`` (each of :data:`FEATURES`: present or not, in the code
    numba compiles), ``compiled_for`` (the CPU numba compiles for: the host's
    name, or ``NUMBA_CPU_NAME``), ``isa_level`` (``sparseconv._config.isa_level``:
    the highest of "portable", "avx2", "avxvnni", "avx512" the CPU has,
    lowered by ``$SPARSECONV_ISA``), ``isa_override`` (that variable, or
    None), ``gemm_backend`` ("mkl" or "openblas", ``SPARSECONV_BLAS``), ``gemm_reason`` (the rule that
    chose it),
    ``numba_threads``, ``int8_kernel`` (the path of 8-bit weights and
    activations: "vnni512", "avxvnni", "avx2-int16" or "portable"),
    ``int8_kernel_7bit`` (when weights or activations have at most 7 bits,
    where AVX2's ``vpmaddubsw`` is exact: "avx2" there), ``xnor_popcount``
    (how the XNOR kernel counts bits, ``_kernels.bits.popcount_path``), ``float_tile`` (the vector width
    of the float register tile IGCV1 runs narrow groups with, ``_kernels.tile.float_path``: "avx512",
    "avx2" or "portable"), ``methods`` (per operator class of
    each family, the method ``conv2d`` runs by default) and ``kernel_cache``
    (:func:`sparseconv._config.cache_dir`, ``SPARSECONV_CACHE_DIR``).
    """
    import llvmlite.binding as llvm

    features = _config.cpu_features()
    return {"cpu": cpu_model(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
            "features": {f: f in features for f in FEATURES},
            "compiled_for": numba.config.CPU_NAME or llvm.get_host_cpu_name(),
            "isa_level": _config.isa_level(), "isa_override": os.environ.get("SPARSECONV_ISA") or None,
            "gemm_backend": _blas.backend(), "gemm_reason": _blas.reason(), "numba_threads": numba.get_num_threads(),
            "int8_kernel": _lowp.int8_path(127, 8), "int8_kernel_7bit": _lowp.int8_path(63, 8),
            "xnor_popcount": _bits.popcount_path(), "float_tile": _tile.float_path(),
            "methods": {f"{f.name}: {cls.__name__}": cls.methods[0] for f in registry.families()
                        for cls in f.operators if len(cls.methods) > 1},
            "kernel_cache": _config.cache_dir()}


#: per level a CPU can be emulated at: numba's target CPU, OpenBLAS's core type, MKL's, torch's and oneDNN's
#: instruction set
_EMULATED = {"portable": ("x86-64-v2", "Nehalem", "SSE4_2", "default", "SSE41"),
             "avx2": ("haswell", "Haswell", "AVX2", "avx2", "AVX2"),
             "avxvnni": ("alderlake", "Haswell", "AVX2", "avx2", "AVX2_VNNI")}
#: the features of the "portable" level's code (x86-64-v2)
_BASELINE = frozenset(("64bit", "cmov", "crc32", "cx8", "cx16", "fxsr", "mmx", "popcnt", "sahf", "sse", "sse2", "sse3",
                       "ssse3", "sse4.1", "sse4.2"))


def _kept(feature, level):
    if level == "portable":
        return feature in _BASELINE
    above = feature.startswith(("avx512", "amx", "avx10", "evex512")) or feature in (
        "avxvnniint8", "avxvnniint16", "avxifma", "avxneconvert", "gfni")
    return not above and (level == "avxvnni" or feature != "avxvnni")


def emulation_env(level):
    """Environment variables under which a new process runs the code a CPU at ``level`` runs.

    ``SPARSECONV_ISA`` alone picks the paths of a lower level, but numba
    still compiles them for this CPU (with its wider registers, and LLVM
    fuses some AVX2 sequences into AVX-512 instructions), and the peers
    (OpenBLAS, MKL, torch) keep their fastest code. These variables make a
    fresh process compile for ``level`` (``NUMBA_CPU_NAME``,
    ``NUMBA_CPU_FEATURES``: this CPU's features without those above it) and
    run the peers at that level (``OPENBLAS_CORETYPE``,
    ``MKL_ENABLE_INSTRUCTIONS``, ``ATEN_CPU_CAPABILITY``,
    ``ONEDNN_MAX_CPU_ISA``): the closest an
    AVX-512 machine comes to measuring an AVX2 one (its caches, clock and
    ports stay its own). ``sparseconv bench ... --isa LEVEL`` runs under them.

    Parameters
    ----------
    level : {"portable", "avx2", "avxvnni"}
        At most this CPU's level (:func:`sparseconv._config.isa_level`).
    """
    import llvmlite.binding as llvm

    if level not in _EMULATED:
        raise ValueError(f"level must be one of {sorted(_EMULATED)}, got {level!r}")
    levels = _config.ISA_LEVELS
    host = _config.isa_level()
    if levels.index(level) > levels.index(host):
        raise ValueError(f"this CPU is at level {host!r}; it cannot run the code of level {level!r}")
    cpu, openblas, mkl, aten, onednn = _EMULATED[level]
    host_features = llvm.get_host_cpu_features()
    flags = ",".join(("+" if present and _kept(f, level) else "-") + f for f, present in sorted(host_features.items()))
    return {"SPARSECONV_ISA": level, "NUMBA_CPU_NAME": cpu, "NUMBA_CPU_FEATURES": flags,
            "OPENBLAS_CORETYPE": openblas, "MKL_ENABLE_INSTRUCTIONS": mkl, "ATEN_CPU_CAPABILITY": aten,
            "ONEDNN_MAX_CPU_ISA": onednn}


def stream_triad(n=1 << 24, repeat=10):
    """Memory bandwidth in GB/s by the STREAM triad a = b + s*c on ``n`` float32 (3 arrays of 4n bytes moved
    per pass; best of ``repeat`` passes) on numba's threads: what a memory-bound kernel (a depthwise conv)
    can reach here."""
    n = _validation.positive_int(n, "n")
    a, b, c = (np.ones(n, np.float32) for _ in range(3))
    s = np.float32(3.0)
    _stream.triad(a, b, c, s)  # compiles, and touches every page
    best = float("inf")
    for _ in range(_validation.positive_int(repeat, "repeat")):
        start = time.perf_counter()
        _stream.triad(a, b, c, s)
        best = min(best, time.perf_counter() - start)
    return 3 * n * 4 / best / 1e9
