"""Shared test settings: tolerances per dtype (one place), seeded generators, the torch oracle."""

import os
import shutil

import numpy as np
import pytest

os.environ.setdefault("MPLBACKEND", "Agg")  # headless plots
# Without an NVIDIA GPU the fused IGC kernels (Triton) run in Triton's interpreter, on the CPU. Triton reads
# this when it is first imported (torch.compile's tests may import it before tests/test_triton.py does).
if shutil.which("nvidia-smi") is None:
    os.environ.setdefault("TRITON_INTERPRET", "1")

#: (rtol, atol) for comparing a float32 / float64 result with an oracle,
#: relative to the oracle's largest magnitude (sums of many products differ
#: in rounding order between implementations).
TOL = {np.dtype(np.float32): 2e-5, np.dtype(np.float64): 1e-12}


def assert_close(actual, expected, dtype=None):
    """max|actual - expected| <= tol * max(1, max|expected|) for the dtype's tolerance."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    tol = TOL[np.dtype(dtype or actual.dtype)]
    scale = max(1.0, float(np.max(np.abs(expected)))) if expected.size else 1.0
    err = float(np.max(np.abs(actual.astype(np.float64) - expected.astype(np.float64)))) if expected.size else 0.0
    assert err <= tol * scale, f"max abs error {err:.3g} > {tol:.1g} * {scale:.3g}"


@pytest.fixture
def rng():
    return np.random.default_rng(20261128)


def torch_conv2d(x, w, bias=None, **kwargs):
    """torch.nn.functional.conv2d on NumPy arrays, in their dtype: the independent oracle."""
    torch = pytest.importorskip("torch")
    xt = torch.from_numpy(np.ascontiguousarray(x))
    wt = torch.from_numpy(np.ascontiguousarray(w))
    bt = None if bias is None else torch.from_numpy(np.ascontiguousarray(bias))
    return torch.nn.functional.conv2d(xt, wt, bt, **kwargs).numpy()
