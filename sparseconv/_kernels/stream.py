"""The STREAM triad, a[i] = b[i] + s * c[i], on numba's threads: the memory bandwidth a kernel that reads and
writes each value once (a depthwise convolution) can reach on this machine."""

import numba

from .._config import PARALLEL, jit


@jit(**PARALLEL)
def triad(a, b, c, s):
    for i in numba.prange(a.size):
        a[i] = b[i] + s * c[i]
