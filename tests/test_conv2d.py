"""conv2d against torch.nn.functional.conv2d and the plain-loop reference over a seeded grid."""

import itertools

import numpy as np
import pytest

import sparseconv as sc
from sparseconv import reference

from conftest import assert_close, torch_conv2d

# (N, C_in, C_out, H, W, kernel, stride, padding, dilation, groups)
CASES = [
    (1, 3, 4, 7, 9, 3, 1, 0, 1, 1),
    (2, 4, 6, 8, 5, 3, 1, 1, 1, 1),
    (2, 4, 6, 9, 11, 3, 2, 1, 1, 1),
    (1, 5, 3, 10, 8, 5, 1, 2, 1, 1),
    (3, 4, 8, 6, 7, 1, 1, 0, 1, 1),
    (2, 6, 4, 9, 8, (3, 1), 1, (1, 0), 1, 1),
    (2, 6, 4, 9, 8, (1, 3), 1, (0, 1), 1, 1),
    (1, 4, 4, 12, 10, 3, 1, "same", 1, 1),
    (2, 3, 5, 11, 9, 4, 1, "same", 1, 1),
    (1, 4, 4, 10, 12, 3, 1, "same", 2, 1),
    (2, 4, 6, 9, 8, 3, 1, "valid", 1, 1),
    (2, 4, 6, 13, 11, 3, 1, 2, 2, 1),
    (1, 4, 6, 13, 12, 3, (2, 1), (1, 2), (1, 2), 1),
    (2, 8, 4, 7, 9, 3, 1, 1, 1, 2),
    (2, 8, 8, 7, 9, 3, 1, 1, 1, 4),
    (2, 6, 6, 8, 7, 3, 1, 1, 1, 6),  # depthwise
    (1, 6, 12, 8, 7, 3, 2, 1, 1, 6),  # depthwise, channel multiplier 2, strided
    # strided direct path (stride phases): rectangular strides, dilations, padding, a stride above the kernel
    (2, 6, 6, 11, 13, 3, (2, 3), (1, 2), (2, 1), 6),
    (1, 4, 4, 9, 9, 1, 2, 0, 1, 4),
    (2, 5, 10, 12, 9, (3, 5), (3, 2), (0, 2), 1, 5),
    (1, 6, 6, 10, 10, 3, 4, 3, 1, 3),
    (1, 8, 8, 7, 7, 5, 2, 2, 2, 8),
    (1, 6, 6, 9, 8, 5, 1, 2, 1, 3),
    (2, 4, 3, 6, 6, 6, 1, 0, 1, 1),  # kernel as large as the input
    (5, 2, 3, 4, 3, 2, 3, 1, 1, 1),
]
DTYPES = [np.float32, np.float64]


def _data(rng, case, dtype):
    n, c_in, c_out, h, w, k, stride, padding, dilation, groups = case
    kh, kw = (k, k) if isinstance(k, int) else k
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    kwargs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return x, weight, bias, kwargs


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_conv2d_matches_torch(rng, case, dtype):
    x, weight, bias, kwargs = _data(rng, case, dtype)
    y = sc.conv2d(x, weight, bias, **kwargs)
    assert y.dtype == np.dtype(dtype)
    assert_close(y, torch_conv2d(x, weight, bias, **kwargs))
    assert_close(sc.conv2d(x, weight, **kwargs), torch_conv2d(x, weight, **kwargs))


@pytest.mark.parametrize("case", CASES[::3], ids=[str(i) for i in range(0, len(CASES), 3)])
def test_conv2d_matches_plain_loops(rng, case):
    x, weight, bias, kwargs = _data(rng, case, np.float64)
    assert_close(sc.conv2d(x, weight, bias, **kwargs), reference.conv2d(x, weight, bias, **kwargs))


def test_reference_matches_torch(rng):
    """The plain-loop oracle itself agrees with torch."""
    for case in CASES[::2]:
        x, weight, bias, kwargs = _data(rng, case, np.float64)
        assert_close(reference.conv2d(x, weight, bias, **kwargs), torch_conv2d(x, weight, bias, **kwargs))


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(2, 64, 20, 20), (1, 32, 9, 9), (3, 16, 30, 28)])
@pytest.mark.parametrize("stride", [1, 2])
def test_conv2d_larger_layers(rng, shape, stride):
    """Shapes big enough to use several tiles, both kernel paths and channel blocks."""
    x = rng.standard_normal(shape).astype(np.float32)
    weight = (rng.standard_normal((48, shape[1], 3, 3)) / 10).astype(np.float32)
    assert_close(sc.conv2d(x, weight, stride=stride, padding=1),
                 torch_conv2d(x, weight, stride=stride, padding=1))


def test_small_workspace_same_result(rng):
    x = rng.standard_normal((2, 8, 15, 13))
    weight = rng.standard_normal((5, 8, 3, 3))
    full = sc.conv2d(x, weight, padding=1)
    for workspace in (8 * 1024, 40 * 1024):
        assert_close(sc.conv2d(x, weight, padding=1, workspace=workspace), full)


def test_memory_layouts(rng):
    """Fortran-ordered, transposed and strided inputs give the same answer."""
    x = rng.standard_normal((2, 3, 9, 10)).astype(np.float32)
    weight = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    expected = torch_conv2d(x, weight, padding=1)
    assert_close(sc.conv2d(np.asfortranarray(x), np.asfortranarray(weight), padding=1), expected)
    big = np.zeros((4, 3, 18, 10), np.float32)
    big[::2, :, ::2] = x
    assert_close(sc.conv2d(big[::2, :, ::2], weight, padding=1), expected)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert_close(sc.conv2d(xt, weight, padding=1), expected)


def test_integer_and_half_inputs(rng):
    """Integers and bools are converted to float64, float16 to float32 (documented)."""
    xi = rng.integers(-5, 5, (1, 2, 6, 6))
    wi = rng.integers(-3, 3, (3, 2, 3, 3))
    y = sc.conv2d(xi, wi)
    assert y.dtype == np.float64
    assert_close(y, torch_conv2d(xi.astype(np.float64), wi.astype(np.float64)))
    y16 = sc.conv2d(xi.astype(np.float16), wi.astype(np.float16))
    assert y16.dtype == np.float32
    assert sc.conv2d(xi > 0, wi).dtype == np.float64


def test_weight_cast_to_input_dtype(rng):
    x = rng.standard_normal((1, 2, 5, 5)).astype(np.float32)
    weight = rng.standard_normal((3, 2, 3, 3))
    y = sc.conv2d(x, weight)
    assert y.dtype == np.float32
    assert_close(y, torch_conv2d(x, weight.astype(np.float32)))


def test_nan_and_inf_propagate_like_torch(rng):
    x = rng.standard_normal((1, 2, 8, 8))
    x[0, 0, 3, 4] = np.nan
    x[0, 1, 6, 1] = np.inf
    weight = rng.standard_normal((3, 2, 3, 3))
    for stride in (1, 2):
        y = sc.conv2d(x, weight, stride=stride, padding=1)
        expected = torch_conv2d(x, weight, stride=stride, padding=1)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(expected))
        np.testing.assert_array_equal(np.isinf(y), np.isinf(expected))
        finite = np.isfinite(expected)
        assert_close(y[finite], expected[finite])


def test_empty_batch_and_zero_channels(rng):
    weight = rng.standard_normal((3, 2, 3, 3))
    y = sc.conv2d(np.zeros((0, 2, 5, 5)), weight)
    assert y.shape == (0, 3, 3, 3)
    bias = np.arange(3.0)
    y = sc.conv2d(np.zeros((1, 0, 5, 5)), np.zeros((3, 0, 3, 3)), bias)
    np.testing.assert_array_equal(y, np.broadcast_to(bias[None, :, None, None], (1, 3, 3, 3)))


@pytest.mark.parametrize("dtype", DTYPES, ids=["f32", "f64"])
def test_operator_and_array_agree(rng, dtype):
    """conv2d with DenseWeight runs the same result as with the 4-D array."""
    x = rng.standard_normal((2, 4, 10, 9)).astype(dtype)
    weight = rng.standard_normal((5, 4, 3, 3)).astype(dtype)
    for kwargs in (dict(padding=1), dict(stride=2), dict(dilation=2, padding="same")):
        assert_close(sc.conv2d(x, sc.DenseWeight(weight), **kwargs), sc.conv2d(x, weight, **kwargs))


def test_generic_operator_path(rng):
    """The chunked im2col + matmat path that operators without a kernel of their own use."""

    class Plain(sc.DenseWeight):
        _conv2d = sc.WeightOperator._conv2d

    x = rng.standard_normal((3, 4, 11, 9))
    weight = rng.standard_normal((6, 4, 3, 3))
    bias = rng.standard_normal(6)
    for kwargs, workspace in itertools.product(
        (dict(padding=1), dict(stride=2, dilation=2, padding=2)), (sc.DEFAULT_WORKSPACE, 5000)
    ):
        assert_close(sc.conv2d(x, Plain(weight), bias, workspace=workspace, **kwargs),
                     torch_conv2d(x, weight, bias, **kwargs))


@pytest.mark.parametrize("shape", [(384, 64, 1, 1), (24, 96, 3, 3), (3, 2, 2, 5), (256, 130, 3, 3)])
def test_tap_major_is_one_matrix_per_tap(rng, shape):
    """Every branch (1x1 copy, NumPy transpose, numba threads above 2^18 entries) against the definition."""
    from sparseconv.conv import tap_major

    w = rng.standard_normal(shape).astype(np.float32)
    c_out, cin_g, kh, kw = shape
    expected = np.stack([w[:, :, i, j] for i in range(kh) for j in range(kw)])  # (kH*kW, C_out, C_in/groups)
    taps = tap_major(w)
    assert taps.flags.c_contiguous and not np.shares_memory(taps, w)
    assert np.array_equal(taps, expected)


@pytest.mark.parametrize("groups, stride, dilation, method", [
    (8, 1, 1, "direct"), (8, 1, (2, 1), "direct"), (4, 1, (1, 3), "direct"),  # 3x3: all nine taps in one pass
    (8, 2, 1, "direct-phases"), (8, (2, 1), (1, 2), "direct-phases"), (4, (1, 3), 2, "direct-phases"),
])
def test_direct_3x3_nine_taps_in_one_pass(rng, groups, stride, dilation, method):
    x = rng.standard_normal((2, 8, 31, 33)).astype(np.float32)  # planes too large for the channels-last path
    weight = rng.standard_normal((8, 8 // groups, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(8).astype(np.float32)
    kwargs = dict(stride=stride, padding=2, dilation=dilation, groups=groups)
    assert sc.conv2d_method(x, weight, bias, **kwargs).split(",")[0] == method  # ", serial" on small ones
    assert_close(sc.conv2d(x, weight, bias, **kwargs), torch_conv2d(x, weight, bias, **kwargs))
