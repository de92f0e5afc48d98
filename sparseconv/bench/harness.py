"""A small, reusable benchmark harness: fair side-by-side timing on a shared, noisy machine.

How it times (the rules the project's benchmarks follow):

1. Every contender is checked against a reference output *before* it is
   timed; a wrong contender is reported, not timed.
2. Warm-up: each contender runs once (numba compiles on first call) and
   the first-call time is kept as ``first_call_s``.
3. A sample repeats the call until it lasts at least ``min_sample_s``; the
   time per call is the sample's mean. Contenders are sampled *alternately*,
   so drifting machine load hits all of them alike, with a pause whenever
   the thread runtime changes: idle workers of one runtime busy-wait for a
   while and steal the cores of the next. OpenBLAS's pthreads spin for about
   0.1 s after each call, long enough to slow a following numba kernel 30x
   (measured), so after an OpenBLAS contender the pause is longer. After a
   pause the contender first runs for half a sample untimed: threads that
   slept (and, on a virtual machine, idle virtual CPUs) take a while to
   come back, and that wake-up should not be charged to one contender.
4. Reported: min, median and max per call over ``repeat`` samples; ratios
   use medians.
"""

import datetime
import os
import platform
import time
from dataclasses import asdict, dataclass, field

import numpy as np

__all__ = ["Contender", "Result", "environment", "run"]


@dataclass
class Contender:
    """One way to compute the benchmark's result.

    ``fn`` takes no arguments and returns the output to check; ``runtime``
    names its thread runtime ("numba", "torch", "openblas", ...) so the
    harness knows when to pause; ``tol`` is the relative tolerance of the
    correctness check, against ``reference`` when given (a contender that
    computes a different product, timed beside the others), else against
    the run's common reference.
    """

    name: str
    fn: object
    runtime: str
    tol: float = 1e-4
    reference: object = None  # its own expected output, where it computes something else than the others


@dataclass
class Result:
    name: str
    ok: bool
    error: float
    first_call_s: float = float("nan")
    times_s: list = field(default_factory=list)

    @property
    def min_s(self):
        return min(self.times_s) if self.times_s else float("nan")

    @property
    def median_s(self):
        return float(np.median(self.times_s)) if self.times_s else float("nan")

    @property
    def max_s(self):
        return max(self.times_s) if self.times_s else float("nan")

    def as_dict(self):
        d = asdict(self)
        d.update(min_s=self.min_s, median_s=self.median_s, max_s=self.max_s)
        return d


def _relative_error(out, ref):
    out = np.asarray(out, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if out.shape != ref.shape:
        return float("inf")
    scale = max(float(np.max(np.abs(ref))), 1e-30) if ref.size else 1.0
    return float(np.max(np.abs(out - ref)) / scale) if ref.size else 0.0


def _sample(fn, min_sample_s):
    reps = 0
    start = time.perf_counter()
    while True:
        fn()
        reps += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_sample_s:
            return elapsed / reps


def _pause(runtime, pause_s):
    return 5 * pause_s if "openblas" in runtime or runtime == "onnxruntime" else pause_s


def run(contenders, reference, repeat=7, min_sample_s=0.03, pause_s=0.2):
    """Check, warm up and time ``contenders`` alternately; return one :class:`Result` each.

    ``pause_s`` is slept on every change of thread runtime (5 times that
    after an OpenBLAS or ONNX Runtime one, whose threads spin).
    """
    results = []
    for c in contenders:
        start = time.perf_counter()
        out = c.fn()
        first = time.perf_counter() - start
        err = _relative_error(out, reference if c.reference is None else c.reference)
        results.append(Result(c.name, bool(err <= c.tol), err, first))
        time.sleep(_pause(c.runtime, pause_s))
    timed = [(c, r) for c, r in zip(contenders, results) if r.ok]
    last_runtime = None
    for _ in range(repeat):
        for c, r in timed:
            if last_runtime is not None and c.runtime != last_runtime:
                time.sleep(_pause(last_runtime, pause_s))
                _sample(c.fn, min_sample_s / 2)  # wake the threads up again, untimed
            r.times_s.append(_sample(c.fn, min_sample_s))
            last_runtime = c.runtime
    return results


def environment():
    """Thread and library settings in force, recorded next to every benchmark."""
    import numba
    import scipy
    from threadpoolctl import threadpool_info

    import sparseconv

    system = sparseconv.system.info()
    env = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "processor": system["cpu"],
        "isa_level": system["isa_level"],
        "compiled_for": system["compiled_for"],
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "numba_threading_layer": _numba_layer(),
        "gemm_backend": system["gemm_backend"],
        "blas": [{k: lib.get(k) for k in ("internal_api", "prefix", "version", "num_threads", "architecture")}
                 for lib in threadpool_info()],
        "env": {k: os.environ[k] for k in sorted(os.environ)
                if k.startswith(("OMP_", "OPENBLAS_", "MKL_", "NUMBA_", "ATEN_", "SPARSECONV_"))},
    }
    try:
        import torch

        env["torch"] = torch.__version__
        env["torch_threads"] = torch.get_num_threads()
    except ImportError:
        env["torch"] = None
    return env


def _numba_layer():
    import numba

    try:
        return numba.threading_layer()
    except ValueError:  # no parallel kernel has run yet
        return numba.config.THREADING_LAYER


