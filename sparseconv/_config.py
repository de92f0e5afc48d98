"""Numba settings for every kernel, in one place.

``fastmath`` enables the LLVM flags that let reductions vectorise
(reassociation, contraction into FMA, reciprocal and no-signed-zero
arithmetic) but *not* ``nnan``/``ninf``: NaN and inf in the data must
propagate exactly as they do in torch.

``cache`` is on only for kernels whose machine code depends on nothing but
their arguments. Kernels that call BLAS through a function pointer are never
cached: the pointer is a per-process address that numba would bake into the
cached code.
"""

FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}

#: flags of a serial kernel that may be cached on disk
SERIAL = dict(nogil=True, cache=True, fastmath=FASTMATH)
#: flags of a parallel kernel that may be cached on disk
PARALLEL = dict(nogil=True, cache=True, parallel=True, fastmath=FASTMATH)
#: flags of a parallel kernel that calls BLAS through a pointer (not cacheable)
PARALLEL_BLAS = dict(nogil=True, cache=False, parallel=True, fastmath=FASTMATH)
