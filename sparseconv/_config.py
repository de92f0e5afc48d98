"""Numba settings for every kernel, in one place, and where compiled kernels are cached.

``fastmath`` enables the LLVM flags that let reductions vectorise
(reassociation, contraction into FMA, reciprocal and no-signed-zero
arithmetic) but *not* ``nnan``/``ninf``: NaN and inf in the data must
propagate exactly as they do in torch.

``cache`` is on for every kernel: its machine code depends on nothing but
its arguments. The kernels that call BLAS take the GEMM's address as an
argument (:func:`sparseconv._blas.gemm`) rather than baking that
per-process address into the compiled code, so they are cached too.

Cached kernels live in :func:`cache_dir`, never beside the source. numba's
default puts them in the package's ``__pycache__``, where pip does not know
them: uninstalling the package leaves that folder behind, and the leftover
``site-packages/sparseconv/`` then shadows an editable install as an empty
namespace package. Each kernel gets its own cache object (no numba-wide
setting changes); the index numba keeps per kernel is keyed by a hash of the
source file and by the CPU, so a changed file or another machine recompiles.
"""

import os
import sys

import numba
from numba.core import caching

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: flags of a serial kernel that may be cached on disk
SERIAL = dict(nogil=True, cache=True, fastmath=FASTMATH)
#: flags of a parallel kernel that may be cached on disk
PARALLEL = dict(nogil=True, cache=True, parallel=True, fastmath=FASTMATH)


def cache_dir():
    """The folder compiled kernels are cached in.

    ``$SPARSECONV_CACHE_DIR`` if set, else numba's ``$NUMBA_CACHE_DIR`` if
    set, else the user's cache folder: ``$XDG_CACHE_HOME/sparseconv`` or
    ``~/.cache/sparseconv`` (Linux), ``~/Library/Caches/sparseconv`` (macOS),
    ``%LOCALAPPDATA%\\sparseconv`` (Windows). Deleting it is always safe.
    """
    for var in ("SPARSECONV_CACHE_DIR", "NUMBA_CACHE_DIR"):
        if os.environ.get(var):
            return os.path.abspath(os.path.expanduser(os.environ[var]))
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or os.path.expanduser(os.path.join("~", "AppData", "Local"))
    elif sys.platform == "darwin":
        base = os.path.expanduser(os.path.join("~", "Library", "Caches"))
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser(os.path.join("~", ".cache"))
    return os.path.join(base, "sparseconv")


class _Locator(caching._SourceFileBackedLocatorMixin, caching._CacheLocator):
    """Cache files of a kernel in ``cache_dir()/<source folder>_<hash of its path>``."""

    def __init__(self, py_func, py_file):
        self._py_file = py_file
        self._lineno = py_func.__code__.co_firstlineno
        # one subfolder per installed copy of the package (site-packages, a checkout, ...)
        self._cache_path = os.path.join(cache_dir(), self.get_suitable_cache_subpath(py_file))

    def get_cache_path(self):
        return self._cache_path


class _Impl(caching.CompileResultCacheImpl):
    _locator_classes = [_Locator]


class _Cache(caching.FunctionCache):
    _impl_class = _Impl


def jit(**flags):
    """``numba.njit`` with ``flags`` (one of the dicts above); ``cache=True`` caches in :func:`cache_dir`.

    Where that folder cannot be written, the kernel compiles once per
    process instead.
    """
    cache = flags.pop("cache", False)

    def decorate(fn):
        dispatcher = numba.njit(**flags)(fn)
        if cache and hasattr(dispatcher, "_cache"):  # not under NUMBA_DISABLE_JIT=1
            try:
                dispatcher._cache = _Cache(dispatcher.py_func)
            except RuntimeError:  # no writable cache folder: numba found no locator
                pass
        return dispatcher

    return decorate


# -- which instruction sets the kernels may use ------------------------------------------------------------

#: instruction-set levels a kernel family has paths for, lowest first
ISA_LEVELS = ("portable", "avx2", "avxvnni", "avx512")
#: the features (llvmlite's names) a CPU needs for each level above "portable"
LEVEL_FEATURES = {"avx2": ("avx2", "fma"), "avxvnni": ("avx2", "fma", "avxvnni"),
                  "avx512": ("avx512f", "avx512bw", "avx512vl")}


def cpu_features():
    """The features numba compiles the kernels for, as llvmlite names them (none with the JIT off).

    The host CPU's, unless ``NUMBA_CPU_FEATURES`` names others (numba then
    compiles for those: ``NUMBA_CPU_NAME=haswell NUMBA_CPU_FEATURES=...``
    builds an AVX2 machine's code on a newer CPU), so a path is never chosen
    whose instructions the compiled code may not contain.
    """
    if numba.config.DISABLE_JIT:
        return frozenset()
    if not hasattr(cpu_features, "_host"):
        if numba.config.CPU_FEATURES is not None:
            named = (f.strip() for f in numba.config.CPU_FEATURES.split(","))
            cpu_features._host = frozenset(f[1:] for f in named if f.startswith("+"))
        else:
            import llvmlite.binding as llvm

            cpu_features._host = frozenset(k for k, v in llvm.get_host_cpu_features().items() if v)
    return cpu_features._host


def isa_level():
    """The highest level of :data:`ISA_LEVELS` the CPU has, lowered to ``$SPARSECONV_ISA`` where that is set.

    ``SPARSECONV_ISA=avx2`` on an AVX-512 machine runs the paths an AVX2 CPU
    runs (kernels look it up on each call); a level above the CPU's is
    the CPU's. A CPU with AVX-512 but not AVX-VNNI (Zen 4, Ice Lake) is at
    "avx512"; its "avxvnni" paths are the "avx2" ones.
    """
    features = cpu_features()
    host = "portable"
    for level in ISA_LEVELS[1:]:
        if all(f in features for f in LEVEL_FEATURES[level]):
            host = level
    forced = os.environ.get("SPARSECONV_ISA")
    if not forced:
        return host
    if forced not in ISA_LEVELS:
        raise ValueError(f"SPARSECONV_ISA must be one of {list(ISA_LEVELS)}, got {forced!r}")
    return min(host, forced, key=ISA_LEVELS.index)


def has(feature):
    """Whether kernels may use CPU ``feature`` (llvmlite's name, e.g. "avx512vnni"): the CPU has it and
    :func:`isa_level` allows its level (avx512* features need "avx512", "avxvnni" needs "avxvnni", others
    "avx2")."""
    need = "avx512" if feature.startswith("avx512") else "avxvnni" if feature == "avxvnni" else "avx2"
    return feature in cpu_features() and ISA_LEVELS.index(isa_level()) >= ISA_LEVELS.index(need)
