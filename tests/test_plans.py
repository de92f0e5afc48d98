"""conv2d's methods, each forced by its shape and run serial and threaded, and the plans conv2d remembers."""

import numba
import numpy as np
import pytest

import sparseconv as sc
from sparseconv import conv as _conv

from conftest import assert_close, torch_conv2d

# (method, N, C_in, C_out, H, W, kernel, stride, padding, dilation, groups): each case small enough to run
# serial, and with 8x the images and 2x the channels (and groups) large enough to run on numba's threads
METHOD_CASES = [
    ("direct", 1, 6, 6, 16, 16, 3, 1, 1, 1, 6),
    ("direct-phases", 1, 6, 12, 23, 21, 3, 2, 1, 1, 6),
    ("depthwise-cl", 1, 64, 64, 7, 7, 3, 1, 1, 1, 64),
    ("depthwise-cl", 1, 64, 64, 9, 8, (3, 5), (2, 1), (1, 2), 1, 64),
    ("depthwise-cl", 1, 48, 48, 7, 7, 5, 1, 4, 2, 48),
    ("shifted", 1, 24, 8, 7, 9, 3, 1, 1, 1, 2),  # groups of 12: too wide for the register tile
    ("grouped-tile", 1, 12, 12, 7, 9, 3, 1, 1, 1, 4),  # groups of 3 channels: rows padded to the tile's 4
    ("grouped-tile", 1, 8, 12, 9, 8, (3, 5), 1, (2, 1), (2, 1), 2),  # 4 in, 6 out per group, dilation
    ("shifted", 1, 16, 16, 12, 12, 1, 1, 0, 1, 2),  # grouped 1x1: GEMMs in place
    ("shifted", 1, 16, 8, 6, 6, 1, 1, 0, 1, 1),  # 1x1: the weight itself is the tap-major view
    ("pixel-tiles", 1, 16, 2, 16, 16, 3, 1, 1, 1, 1),
    ("pixel-tiles", 1, 16, 2, 32, 31, 3, 2, 1, 1, 1),  # strided
    ("pixel-tiles", 1, 16, 2, 45, 12, (3, 5), (2, 1), (1, 2), (2, 1), 1),
    ("channels-last", 2, 6, 4, 9, 11, 3, 2, 1, 1, 1),  # (C_in < 16: too few channels for the pixel tiles)
    ("channels-last", 1, 6, 4, 10, 9, (3, 5), (2, 1), (1, 2), 1, 1),
    ("channels-last", 1, 6, 4, 11, 12, 3, 1, 2, 2, 1),  # dilation: the per-tap copies
    ("channels-last", 3, 3, 6, 13, 12, 7, 2, 3, 1, 1),  # a stem: kW*C_in = 21, borders on every side
    ("channels-last", 1, 6, 2, 33, 31, 3, 2, 1, 1, 1),  # an image of more than one tile: written in place
    ("channels-last", 1, 6, 24, 2, 2, 3, 1, 1, 1, 1),  # more output channels than pixels: the weight's order
    ("im2col", 2, 2, 4, 17, 16, 3, 2, 1, 1, 1),
    ("im2col", 2, 8, 4, 21, 20, 1, 2, 0, 1, 1),
    ("im2col", 2, 8, 8, 9, 9, 3, 2, 1, 1, 2),
    ("im2col", 1, 2, 2, 34, 32, 3, 2, 1, 1, 1),
]


def _first(method):
    return next(case for case in METHOD_CASES if case[0] == method)


def _case(rng, case, scale, dtype=np.float64):
    _, n, c_in, c_out, h, w, k, stride, padding, dilation, groups = case
    kh, kw = (k, k) if isinstance(k, int) else k
    grow = 2 if scale > 1 else 1
    n, c_in, c_out = n * scale, c_in * grow, c_out * grow
    groups *= grow if groups > 1 else 1
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    weight = rng.standard_normal((c_out, c_in // groups, kh, kw)).astype(dtype)
    bias = rng.standard_normal(c_out).astype(dtype)
    return x, weight, bias, dict(stride=stride, padding=padding, dilation=dilation, groups=groups)


@pytest.mark.parametrize("scale", [1, 8], ids=["serial", "threads"])
@pytest.mark.parametrize("case", METHOD_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(METHOD_CASES)])
def test_each_method_matches_torch(rng, case, scale):
    x, weight, bias, kwargs = _case(rng, case, scale)
    method = sc.conv2d_method(x, weight, bias, **kwargs)
    serial = scale == 1 or numba.get_num_threads() == 1
    assert method == case[0] + (", serial" if serial else ""), "the case no longer reaches its method"
    expected = torch_conv2d(x, weight, bias, **kwargs)
    assert_close(sc.conv2d(x, weight, bias, **kwargs), expected, np.float64)
    assert_close(sc.conv2d(x, weight, **kwargs), torch_conv2d(x, weight, None, **kwargs), np.float64)
    op = sc.as_operator(weight) if kwargs["groups"] == 1 else sc.BlockDiagonalWeight(weight, kwargs["groups"])
    geometry = {k: v for k, v in kwargs.items() if k != "groups"}
    assert_close(sc.conv2d(x, op, bias, **geometry), expected, np.float64)  # with the operator's cached layouts


def test_method_names_operators_and_checks_its_arguments(rng):
    x = rng.standard_normal((1, 4, 6, 6))
    assert sc.conv2d_method(x, sc.low_rank(rng.standard_normal((4, 4, 3, 3)), 2)) == "operator"
    assert sc.conv2d_method(np.zeros((0, 4, 6, 6)), np.ones((3, 4, 3, 3))) == "empty"
    with pytest.raises(ValueError, match="groups=3 must divide"):
        sc.conv2d_method(x, np.ones((4, 4, 3, 3)), groups=3)
    with pytest.raises(TypeError, match="stride"):
        sc.conv2d_method(x, np.ones((4, 4, 3, 3)), stride=1.5)


def test_a_remembered_plan_serves_new_values_and_keeps_checking(rng):
    x, weight, bias, kwargs = _case(rng, _first("channels-last"), 1, np.float32)
    kwargs.pop("groups")
    first = sc.conv2d(x, weight, bias, **kwargs)
    assert_close(first, torch_conv2d(x, weight, bias, **kwargs), np.float32)
    x2, w2, b2 = x[::-1].copy(), -weight, bias + 1  # same shapes, other values: the plan is reused
    assert_close(sc.conv2d(x2, w2, b2, **kwargs), torch_conv2d(x2, w2, b2, **kwargs), np.float32)
    assert_close(sc.conv2d(x2, w2, **kwargs), torch_conv2d(x2, w2, None, **kwargs), np.float32)
    # arguments a plan's key would confuse with the remembered ones still reach the checks
    with pytest.raises(TypeError, match="stride"):
        sc.conv2d(x, weight, bias, stride=True, padding=kwargs["padding"])
    with pytest.raises(TypeError, match="workspace"):
        sc.conv2d(x, weight, bias, **kwargs, workspace=float(_conv.DEFAULT_WORKSPACE))
    # what the key leaves out (layouts, dtypes, lists) takes the validating path, to the same answer
    strided = np.asfortranarray(x)
    assert_close(sc.conv2d(strided, weight, bias, **kwargs), first, np.float32)
    listed = dict(kwargs, stride=list((kwargs["stride"],) * 2))
    assert_close(sc.conv2d(x, weight, bias, **listed), first, np.float32)
    y64 = sc.conv2d(x.astype(np.float64), weight, bias, **kwargs)
    assert y64.dtype == np.float64
    assert_close(y64, torch_conv2d(x.astype(np.float64), weight.astype(np.float64), bias.astype(np.float64),
                                   **kwargs), np.float64)


def test_plans_follow_the_thread_count(rng):
    x, weight, bias, kwargs = _case(rng, _first("shifted"), 8)
    expected = torch_conv2d(x, weight, bias, **kwargs)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        assert sc.conv2d_method(x, weight, bias, **kwargs) == "shifted, serial"
        assert_close(sc.conv2d(x, weight, bias, **kwargs), expected, np.float64)
    finally:
        numba.set_num_threads(before)
    assert_close(sc.conv2d(x, weight, bias, **kwargs), expected, np.float64)


def test_the_plan_table_is_bounded(rng, monkeypatch):
    monkeypatch.setattr(_conv, "_plans", {})
    weight = rng.standard_normal((2, 2, 1, 1))
    for w in range(1, _conv._MAX_PLANS + 10):
        sc.conv2d(rng.standard_normal((1, 2, 1, w)), weight)
    assert 0 < len(_conv._plans) <= _conv._MAX_PLANS
