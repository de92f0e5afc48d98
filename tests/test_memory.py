"""conv2d stays within its workspace even when the full im2col matrix would not fit 4 times over."""

import tracemalloc

import numpy as np
import pytest

import sparseconv as sc

pytestmark = pytest.mark.slow

LIMIT = 1 << 20  # 1 MiB
# tracemalloc also counts the interpreter's own small objects (ints, tuples,
# frames) created during the call; they are not buffers, and stay far below this.
BOOKKEEPING = 16 << 10


def _peak_extra(fn):
    """Peak bytes NumPy allocated during fn(), minus what fn returns."""
    fn()  # compile and warm up outside the measurement
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        result = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - result.nbytes


@pytest.fixture(scope="module")
def layer():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((2, 16, 64, 64)).astype(np.float32)
    weight = rng.standard_normal((16, 16, 3, 3)).astype(np.float32)
    full_cols = 16 * 9 * 2 * 64 * 64 * 4
    assert full_cols >= 4 * LIMIT
    return x, weight


def test_measurement_sees_a_full_im2col(layer):
    """The probe is able to fail: materialising im2col shows up in it."""
    x, _ = layer
    assert _peak_extra(lambda: sc.im2col(x, 3, padding=1)[:1]) >= 4 * LIMIT


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=1), dict(padding=2, dilation=2)],
                         ids=["stride1", "stride2", "dilated"])
def test_dense_conv_within_workspace(layer, kwargs):
    x, weight = layer
    extra = _peak_extra(lambda: sc.conv2d(x, weight, workspace=LIMIT, **kwargs))
    assert 0 < extra <= LIMIT + BOOKKEEPING, extra


def test_operator_path_within_workspace(layer):
    class Plain(sc.DenseWeight):
        _conv2d = sc.WeightOperator._conv2d

    x, weight = layer
    op = Plain(weight)
    extra = _peak_extra(lambda: sc.conv2d(x, op, padding=1, workspace=LIMIT))
    assert 0 < extra <= LIMIT + BOOKKEEPING, extra


def test_workspace_too_small_is_a_clear_error(layer):
    x, weight = layer
    with pytest.raises(ValueError, match="workspace"):
        sc.conv2d(x, weight, stride=2, workspace=64)
