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
