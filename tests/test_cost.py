"""The cost model against hand counts."""

import numpy as np
import pytest

import sparseconv as sc


@pytest.mark.parametrize("c_in, c_out, k, hw, n, stride, padding, macs", [
    # MACs = N * H_out * W_out * C_out * C_in * kH * kW, by hand
    (64, 64, 3, 56, 1, 1, 1, 1 * 56 * 56 * 64 * 64 * 9),          # 115,605,504
    (256, 256, 1, 14, 8, 1, 0, 8 * 14 * 14 * 256 * 256 * 1),       # 102,760,448
    (3, 32, 3, 28, 2, 2, 1, 2 * 14 * 14 * 32 * 3 * 9),             # 338,688
    (512, 512, 3, 7, 1, 1, 0, 1 * 5 * 5 * 512 * 512 * 9),          # 58,982,400
])
def test_dense_macs_by_hand(c_in, c_out, k, hw, n, stride, padding, macs):
    weight = np.zeros((c_out, c_in, k, k), np.float32)
    x_shape = (n, c_in, hw, hw)
    for w in (weight, sc.DenseWeight(weight)):
        cost = sc.conv_cost(w, x_shape, stride=stride, padding=padding)
        assert cost.macs == macs
        assert cost.flops == 2 * macs
        assert cost.mults == cost.adds == macs
        assert cost.bitops == 0
        assert cost.equivalent_flops == 2 * macs


def test_bytes_moved_by_hand():
    weight = np.zeros((8, 4, 3, 3), np.float32)
    cost = sc.conv_cost(weight, (2, 4, 10, 10), padding=1)
    n_cols = 2 * 10 * 10
    assert cost.bytes_moved == 4 * (8 * 36 + 36 * n_cols + 8 * n_cols)
    assert sc.conv_cost(weight.astype(np.float64), (2, 4, 10, 10), padding=1).bytes_moved == 2 * cost.bytes_moved


def test_grouped_weight_counts_its_blocks_only():
    weight = np.zeros((8, 2, 3, 3))  # groups = 4 on 8 input channels
    cost = sc.conv_cost(weight, (1, 8, 6, 6), padding=1)
    assert cost.macs == 36 * 8 * 2 * 9
    assert sc.conv_cost(weight, (1, 8, 6, 6), padding=1, groups=4) == cost


def test_cost_arithmetic():
    a = sc.Cost(mults=3, adds=4, bitops=64, bytes_moved=10)
    b = sc.Cost(mults=1, adds=1, bitops=0, bytes_moved=2)
    assert a + b == sc.Cost(4, 5, 64, 12)
    assert 2 * b == b * 2 == sc.Cost(2, 2, 0, 4)
    assert a.flops == 7 and a.macs == 3.5 and a.equivalent_flops == 8


def test_stride_2_igcv3_prices_its_expansion_at_the_input_resolution():
    op = sc.IGCV3.random(8, 8, expansion=2, groups=(2, 2))  # 8 -> E = 16 -> 8, 3x3 depthwise
    cost = sc.conv_cost(op, (2, 8, 12, 12), stride=2, padding=1)  # 12 x 12 -> 6 x 6
    expand = 16 * (8 // 2) * 2 * 12 * 12  # E outputs x C_in/G1 inputs, at every input pixel
    depthwise = 16 * 9 * 2 * 6 * 6
    reduce = 8 * (16 // 2) * 2 * 6 * 6
    assert cost.macs == expand + depthwise + reduce == 33_408


def test_strided_dilated_spatial_low_rank_by_hand(rng):
    op = sc.spatial_low_rank(rng.standard_normal((6, 4, 3, 5)), 2)  # (2, 4, 3, 1) then (6, 2, 1, 5)
    x_shape = (1, 4, 11, 13)
    kwargs = dict(stride=(2, 3), padding=(1, 2), dilation=(1, 2))
    # H_out = (11 + 2 - 2 - 1) // 2 + 1 = 6, W_out = (13 + 4 - 8 - 1) // 3 + 1 = 3; the vertical conv keeps W = 13
    vertical = 2 * (4 * 3) * 6 * 13
    horizontal = 6 * (2 * 5) * 6 * 3
    assert sc.conv_cost(op, x_shape, **kwargs).macs == vertical + horizontal == 2_952
    # op @ cols: the vertical filters act on each of the kW taps of a column
    assert op.cost(10).macs == (2 * 12 * 5 + 6 * 10) * 10


def test_spatial_low_rank_runs_without_its_dense_kernel(rng, monkeypatch):
    op = sc.spatial_low_rank(rng.standard_normal((6, 4, 3, 5)), 2)
    cols = rng.standard_normal((4 * 3 * 5, 17))
    y = rng.standard_normal((6, 17))
    expected, adjoint = op.to_dense() @ cols, op.to_dense().T @ y
    monkeypatch.setattr(type(op), "to_weight", lambda self: pytest.fail("the dense kernel was built"))
    np.testing.assert_allclose(op @ cols, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(op.rmatmat(y), adjoint, rtol=1e-12, atol=1e-12)


STORED_NONZEROS = ("prune", "block_diagonal", "reduce_channels")


@pytest.mark.parametrize("family", [f.name for f in sc.registry.families()])
def test_every_family_at_stride_2(family):
    rng = np.random.default_rng(5)
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    label, params = sc.registry.family(family).points(w.shape)[0]
    op = sc.registry.family(family).build(w, **params)
    x_shape = (2, 8, 10, 10)  # stride 2, padding 1: 5 x 5 outputs, 50 columns
    cost = sc.conv_cost(op, x_shape, stride=2, padding=1)
    if family == "igcv3":  # t = 1, groups (2, 2): its expansion 8 -> 8 runs at the input's 2 * 100 pixels
        assert params["expansion"] == 1 and params["groups"] == (2, 2)
        assert cost.macs == 8 * 4 * 200 + 8 * 9 * 50 + 8 * 4 * 50 == 11_600
    elif family == "spatial_low_rank":  # its vertical conv keeps the input's width of 10
        r = op.rank
        assert cost.macs == r * 8 * 3 * 2 * 5 * 10 + 8 * r * 3 * 2 * 5 * 5
    else:  # every part runs on the 50 output columns
        assert cost.macs == op.cost(50).macs
        if family in STORED_NONZEROS:  # one multiply-add per stored nonzero per column
            assert cost.macs == np.count_nonzero(op.to_dense()) * 50
