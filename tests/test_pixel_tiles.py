"""The pixel-tile direct convolution (a zero-padded copy of x, register tiles of output pixels x channel blocks)."""

import numba
import numpy as np
import pytest

import sparseconv as sc
from sparseconv import _config
from sparseconv import conv as _conv
from sparseconv._kernels import pixel_tile
from sparseconv._validation import geometry

from conftest import assert_close, torch_conv2d


def _operator_method(x, weight, stride, padding, dilation):
    """The dense method an operator's call takes (its weight's layouts cached): conv2d_method says 'operator'."""
    geom = geometry(x.shape, weight.shape[2:], stride, padding, dilation)
    return _conv._dense_plan(x.shape, x.dtype, weight.shape, geom, 1, _conv.DEFAULT_WORKSPACE, True,
                             numba.get_num_threads()).method

# (N, C_in, C_out, H, W, kernel, stride, padding, dilation)
CASES = [
    (1, 16, 8, 7, 9, 3, 1, 1, 1),  # fewer output channels than a block
    (2, 16, 40, 9, 11, 3, 1, 1, 1),  # a partial second block; tiles across rows and images
    (3, 32, 33, 14, 13, 3, 2, 1, 1),  # stride 2, odd sizes
    (1, 17, 5, 10, 10, (3, 5), (2, 1), (1, 2), (2, 1)),  # rectangular kernel, dilation, odd C_in
    (2, 24, 16, 8, 8, 5, 1, 4, 2),  # padding wider than the kernel's reach: whole zero rows
    (1, 20, 12, 12, 11, 3, 1, "same", 1),
    (1, 16, 64, 9, 9, 3, 1, 0, 1),  # no padding
]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", CASES, ids=[str(i) for i in range(len(CASES))])
def test_pixel_tiles_match_torch(rng, case, dtype):
    n, c_in, c_out, h, w, k, stride, padding, dilation = case
    kh, kw = (k, k) if isinstance(k, int) else k
    kwargs = dict(stride=stride, padding=padding, dilation=dilation)
    for scale in (1, 8):  # serial, then on numba's threads
        x = rng.standard_normal((n * scale, c_in, h, w)).astype(dtype)
        weight = rng.standard_normal((c_out, c_in, kh, kw)).astype(dtype)
        bias = rng.standard_normal(c_out).astype(dtype)
        assert _operator_method(x, weight, **kwargs).startswith("pixel-tiles")
        if scale > 1:  # enough output pixels to pack the weight per call
            assert sc.conv2d_method(x, weight, bias, **kwargs).startswith("pixel-tiles")
        assert_close(sc.conv2d(x, weight, bias, **kwargs), torch_conv2d(x, weight, bias, **kwargs), dtype)
        assert_close(sc.conv2d(x, weight, **kwargs), torch_conv2d(x, weight, **kwargs), dtype)
        op = sc.as_operator(weight)  # the packed weight cached on the operator
        for _ in range(2):
            assert_close(sc.conv2d(x, op, bias, **kwargs), torch_conv2d(x, weight, bias, **kwargs), dtype)
    if numba.get_num_threads() > 1:
        assert not sc.conv2d_method(x, weight, **kwargs).endswith("serial")


# (N, C_in, C_out, H, W, stride, padding, groups), 3x3 kernels, at least 256 output pixels
GROUPED = [
    (1, 32, 32, 17, 16, 1, 1, 2),  # each group's output channels in one partial block
    (2, 64, 96, 12, 11, 1, 1, 4),  # 24 outputs per group: a partial block per group, tiles across images
    (2, 48, 42, 24, 23, 2, 1, 3),  # stride 2, 16 inputs and 14 outputs per group
    (2, 128, 128, 14, 14, 1, 0, 2),  # two blocks per group at once, no padding
]


@pytest.fixture
def narrow_groups_take_tiles(monkeypatch):
    """Groups of 16 or more channels take the pixel tiles (in use, 128 or more), so that small shapes reach them."""
    monkeypatch.setattr(_conv, "_PIXEL_TILE_MIN_GROUP", 16)
    _conv._dense_plan.cache_clear()  # plans made under the other threshold
    yield
    _conv._dense_plan.cache_clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("case", GROUPED, ids=[str(i) for i in range(len(GROUPED))])
def test_grouped_pixel_tiles_match_torch(rng, case, dtype, narrow_groups_take_tiles):
    """Each group's blocks read only its own input channels and write only its own outputs."""
    n, c_in, c_out, h, w, stride, padding, groups = case
    kwargs = dict(stride=stride, padding=padding, groups=groups)
    for scale in (1, 4):
        x = rng.standard_normal((n * scale, c_in, h, w)).astype(dtype)
        weight = rng.standard_normal((c_out, c_in // groups, 3, 3)).astype(dtype)
        bias = rng.standard_normal(c_out).astype(dtype)
        assert sc.conv2d_method(x, weight, bias, **kwargs).startswith("pixel-tiles")
        expected = torch_conv2d(x, weight, bias, **kwargs)
        assert_close(sc.conv2d(x, weight, bias, **kwargs), expected, dtype)
        op = sc.BlockDiagonalWeight(weight, groups)  # the packed weight cached on the operator
        for _ in range(2):
            assert_close(sc.conv2d(x, op, bias, stride=stride, padding=padding), expected, dtype)


def test_grouped_pixel_tiles_need_wide_groups_and_pixels(rng):
    """In use: 128 channels per group and 256 output pixels take the tiles; 64 per group, or 144 pixels, do not."""
    weight = rng.standard_normal((256, 128, 3, 3)).astype(np.float32)
    x = rng.standard_normal((2, 256, 12, 12)).astype(np.float32)  # 288 output pixels
    assert sc.conv2d_method(x, weight, padding=1, groups=2).startswith("pixel-tiles")
    assert_close(sc.conv2d(x, weight, padding=1, groups=2), torch_conv2d(x, weight, padding=1, groups=2),
                 np.float32)
    assert not sc.conv2d_method(x, weight[:, :64], padding=1, groups=4).startswith("pixel-tiles")
    assert not sc.conv2d_method(x[:1, :, :, :], weight, padding=1, groups=2).startswith("pixel-tiles")


def test_a_weight_packed_per_call_needs_enough_pixels(rng):
    """Few output pixels and a plain weight array: the pack would cost more than it saves, a GEMM path runs."""
    x = rng.standard_normal((1, 64, 7, 7)).astype(np.float32)
    weight = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
    assert not sc.conv2d_method(x, weight, padding=1).startswith("pixel-tiles")
    assert _operator_method(x, weight, 1, 1, 1).startswith("pixel-tiles")
    assert_close(sc.conv2d(x, weight, padding=1), torch_conv2d(x, weight, padding=1), np.float32)


def _numpy_pack(weight, width):
    """The zero-padded (C_out, K) matrix, columns in (i, j, c) order, cut in blocks of ``width`` rows, transposed."""
    c_out = weight.shape[0]
    blocks = -(-c_out // width)
    rows = np.zeros((blocks * width, weight[0].size), weight.dtype)
    rows[:c_out] = weight.transpose(0, 2, 3, 1).reshape(c_out, -1)
    return rows.reshape(blocks, width, -1).transpose(0, 2, 1).reshape(-1, width)


def test_packed_weight_is_each_blocks_transpose(rng):
    """The packing kernel against NumPy, ungrouped and grouped (each group packed apart, in order)."""
    for c_out, width in [(5, 16), (40, 32), (64, 32), (70, 8)]:
        weight = rng.standard_normal((c_out, 19, 3, 2)).astype(np.float32)
        assert np.array_equal(_conv.pixel_tile_weight(weight, width), _numpy_pack(weight, width))
    weight = rng.standard_normal((48, 16, 3, 3)).astype(np.float32)  # 3 groups of 16 outputs, blocks of 32
    expected = np.concatenate([_numpy_pack(weight[16 * g:16 * (g + 1)], 32) for g in range(3)])
    assert np.array_equal(_conv.pixel_tile_weight(weight, 32, groups=3), expected)


@pytest.mark.parametrize("level", ["portable", "avx2", "avx512"])
def test_pixel_tiles_on_every_level(rng, monkeypatch, level):
    """Each path's tile (12 pixels x 512-bit, 6 x 256-bit with FMA, 6 x 128-bit) that this CPU has, against torch."""
    if _config.ISA_LEVELS.index(_config.isa_level()) < _config.ISA_LEVELS.index(level):
        pytest.skip(f"this CPU has no {level}")
    monkeypatch.setenv("SPARSECONV_ISA", level)
    for dtype in (np.float32, np.float64):
        x = rng.standard_normal((3, 24, 11, 10)).astype(dtype)
        weight = rng.standard_normal((37, 24, 3, 3)).astype(dtype)
        bias = rng.standard_normal(37).astype(dtype)
        op = sc.as_operator(weight)
        for w in (weight, op):  # the operator keeps one packed weight per block width
            assert_close(sc.conv2d(x, w, bias, stride=(1, 2), padding=1),
                         torch_conv2d(x, weight, bias, stride=(1, 2), padding=1), dtype)


def test_block_width_is_two_vectors_of_the_path():
    assert pixel_tile.block_channels("avx512", np.float32) == 32
    assert pixel_tile.block_channels("avx2", np.float64) == 8
    assert pixel_tile.block_channels("portable", np.float32) == 8


def test_a_workspace_too_small_for_the_copy_takes_another_method(rng):
    x = rng.standard_normal((2, 16, 12, 12))
    weight = rng.standard_normal((8, 16, 3, 3))
    small = 16 * 14 * 14 * 8  # less than the zero-padded copy of x
    method = sc.conv2d_method(x, weight, padding=1, workspace=small)
    assert not method.startswith("pixel-tiles")
    assert_close(sc.conv2d(x, weight, padding=1, workspace=small), torch_conv2d(x, weight, padding=1), np.float64)


def test_nan_and_inf_propagate_as_in_torch():
    x = np.ones((8, 16, 6, 6), np.float32)
    x[0, 3, 2, 2] = np.nan
    x[0, 5, 4, 4] = np.inf
    weight = np.ones((4, 16, 3, 3), np.float32)
    expected = torch_conv2d(x, weight, padding=1)
    got = sc.conv2d(x, weight, padding=1)
    assert sc.conv2d_method(x, weight, padding=1).startswith("pixel-tiles")
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))
