"""Low-rank family: Eckart-Young, the two convolutions it describes, channel reduction."""

import numpy as np
import pytest

import sparseconv as sc

from conftest import assert_close, torch_conv2d


@pytest.fixture
def weight(rng):
    return rng.standard_normal((12, 6, 3, 3))


def test_eckart_young(weight):
    matrix = weight.reshape(12, -1)
    s = np.linalg.svd(matrix, compute_uv=False)
    for r in (1, 3, 7, 12):
        op = sc.low_rank(weight, rank=r)
        assert op.rank == r and op.u.shape == (12, r) and op.v.shape == (r, 54)
        err2 = np.linalg.norm(matrix - op.to_dense()) ** 2
        assert np.isclose(err2, np.sum(s[r:] ** 2), rtol=1e-9, atol=1e-9)


def test_no_random_rank_r_operator_beats_it(rng, weight):
    matrix = weight.reshape(12, -1)
    r = 3
    best = np.linalg.norm(matrix - sc.low_rank(weight, rank=r).to_dense())
    for _ in range(200):
        u = rng.standard_normal((12, r))
        v = np.linalg.lstsq(u, matrix, rcond=None)[0]  # best V for this U
        assert np.linalg.norm(matrix - u @ v) >= best - 1e-9


def test_energy_picks_smallest_rank(weight):
    s = np.linalg.svd(weight.reshape(12, -1), compute_uv=False)
    kept = np.cumsum(s**2) / np.sum(s**2)
    for energy in (0.3, 0.5, 0.9, 0.99, 1.0):
        r = sc.low_rank(weight, energy=energy).rank
        assert kept[r - 1] >= energy - 1e-12
        assert r == 1 or kept[r - 2] < energy


def test_error_non_increasing_in_rank(weight):
    errors = [sc.relative_error(sc.low_rank(weight, rank=r), weight) for r in range(1, 13)]
    assert all(a >= b - 1e-12 for a, b in zip(errors, errors[1:]))
    assert errors[-1] < 1e-12


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=1), dict(dilation=2, padding=2)])
def test_low_rank_conv_matches_torch(rng, weight, kwargs):
    x = rng.standard_normal((2, 6, 11, 9))
    bias = rng.standard_normal(12)
    op = sc.low_rank(weight, rank=4)
    expected = torch_conv2d(x, op.to_weight(), bias, **kwargs)
    assert_close(sc.conv2d(x, op, bias, **kwargs), expected)
    first, second = op.as_convs()
    assert first.shape == (4, 6, 3, 3) and second.shape == (12, 4, 1, 1)
    two_convs = torch_conv2d(torch_conv2d(x, first, **kwargs), second, bias)
    assert_close(two_convs, expected)


def test_low_rank_products_and_cost(rng, weight):
    op = sc.low_rank(weight, rank=5)
    cols = rng.standard_normal((54, 7))
    y = rng.standard_normal((12, 7))
    assert_close(op @ cols, op.to_dense() @ cols)
    assert_close(op.rmatmat(y), op.to_dense().T @ y)
    assert op.num_params == 5 * (12 + 54)
    assert op.cost(10).macs == 10 * 5 * (54 + 12)


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=(2, 1), padding=(1, 2)),
                                    dict(padding="same", dilation=2)])
def test_spatial_low_rank_conv_matches_torch(rng, kwargs):
    weight = rng.standard_normal((8, 5, 3, 3))
    op = sc.spatial_low_rank(weight, rank=4)
    assert op.vertical.shape == (4, 5, 3, 1) and op.horizontal.shape == (8, 4, 1, 3)
    x = rng.standard_normal((2, 5, 10, 9))
    assert_close(sc.conv2d(x, op, **kwargs), torch_conv2d(x, op.to_weight(), **kwargs))


def test_spatial_low_rank_two_torch_convs(rng):
    weight = rng.standard_normal((8, 5, 3, 3))
    op = sc.spatial_low_rank(weight, rank=3)
    x = rng.standard_normal((1, 5, 9, 7))
    mid = torch_conv2d(x, op.vertical, padding=(1, 0))
    assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(mid, op.horizontal, padding=(0, 1)))


def test_spatial_low_rank_full_rank_is_exact(rng):
    weight = rng.standard_normal((4, 3, 3, 3))
    assert sc.relative_error(sc.spatial_low_rank(weight, rank=9), weight) < 1e-12
    separable = np.einsum("oj,ci->ocij", rng.standard_normal((4, 3)), rng.standard_normal((3, 3)))
    assert sc.relative_error(sc.spatial_low_rank(separable, rank=1), separable) < 1e-12


def test_reduce_channels(rng):
    weight = rng.standard_normal((8, 6, 3, 3))
    weight[2] *= 0.01
    weight[:, 4] *= 0.01
    op = sc.reduce_channels(weight, keep_out=7, keep_in=5)
    assert 2 not in op.keep_out and 4 not in op.keep_in
    assert op.small.shape == (7, 5, 3, 3)
    assert op.cost(10).macs == 10 * 7 * 5 * 9
    assert op.kernel_shape == (8, 6, 3, 3)
    x = rng.standard_normal((2, 6, 8, 8))
    bias = rng.standard_normal(8)
    assert_close(sc.conv2d(x, op, bias, padding=1), torch_conv2d(x, op.to_weight(), bias, padding=1))
    small = torch_conv2d(x[:, op.keep_in], op.small, padding=1)
    assert_close(sc.conv2d(x, op, padding=1)[:, op.keep_out], small)
    cols = rng.standard_normal((54, 4))
    y = rng.standard_normal((8, 4))
    assert_close(op @ cols, op.to_dense() @ cols)
    assert_close(op.rmatmat(y), op.to_dense().T @ y)
    assert sc.reduce_channels(weight, keep_out=0.5).keep_out.size == 4


def test_reduce_channels_error_non_increasing(rng):
    weight = rng.standard_normal((8, 6, 3, 3))
    errors = [sc.relative_error(sc.reduce_channels(weight, keep_out=k), weight) for k in range(1, 9)]
    assert all(a >= b for a, b in zip(errors, errors[1:])) and errors[-1] == 0


@pytest.mark.parametrize("make", [
    lambda w: sc.low_rank(w, rank=3),
    lambda w: sc.spatial_low_rank(w, rank=2),
    lambda w: sc.reduce_channels(w, keep_out=5, keep_in=4),
])
def test_save_load(tmp_path, rng, make):
    op = make(rng.standard_normal((8, 6, 3, 3)).astype(np.float32))
    op.save(tmp_path / "op.npz")
    back = sc.load(tmp_path / "op.npz")
    assert type(back) is type(op)
    assert back.to_dense().tobytes() == op.to_dense().tobytes()


@pytest.mark.parametrize("call, match", [
    (lambda w: sc.low_rank(w), "exactly one of rank and energy"),
    (lambda w: sc.low_rank(w, rank=3, energy=0.5), "exactly one of rank and energy"),
    (lambda w: sc.low_rank(w, rank=0), "rank must be an int from 1 to 8"),
    (lambda w: sc.low_rank(w, rank=9), "rank must be an int from 1 to 8"),
    (lambda w: sc.low_rank(w, energy=1.5), "energy must be a fraction"),
    (lambda w: sc.spatial_low_rank(w, rank=19), "rank must be an int from 1 to 18"),
    (lambda w: sc.reduce_channels(w, keep_out=0), "keeps no channel"),
    (lambda w: sc.reduce_channels(w, keep_in=7), r"keep_in=7 as a count must be in \[0, 6\]"),
    (lambda w: sc.reduce_channels(w, criterion="max"), "criterion must be 'l1' or 'l2'"),
    (lambda w: sc.low_rank(np.where(w > 1, np.nan, w), rank=2), "NaN or inf"),
])
def test_bad_input(rng, call, match):
    with pytest.raises(ValueError, match=match):
        call(rng.standard_normal((8, 6, 3, 3)))
