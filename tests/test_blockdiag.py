"""Block-diagonal = group convolution, against torch's grouped conv2d."""

import numpy as np
import pytest

import sparseconv as sc

from conftest import assert_close, torch_conv2d


@pytest.mark.parametrize("groups", [1, 2, 4, 8])
@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=1), dict(dilation=2, padding=2)])
def test_equals_torch_grouped_conv(rng, groups, kwargs):
    weight = rng.standard_normal((8, 8, 3, 3))
    op = sc.block_diagonal(weight, groups)
    x = rng.standard_normal((2, 8, 10, 9))
    bias = rng.standard_normal(8)
    assert_close(sc.conv2d(x, op, bias, **kwargs), torch_conv2d(x, op.weight, bias, groups=groups, **kwargs))
    assert_close(sc.conv2d(x, op, bias, **kwargs), torch_conv2d(x, op.to_weight(), bias, **kwargs))


@pytest.mark.parametrize("c_out", [6, 12])
def test_depthwise(rng, c_out):
    weight = rng.standard_normal((c_out, 1, 3, 3))
    op = sc.BlockDiagonalWeight.from_group_weight(weight, 6)
    x = rng.standard_normal((2, 6, 11, 8)).astype(np.float32)
    for kwargs in (dict(padding=1), dict(stride=2, padding=1)):
        assert_close(sc.conv2d(x, op, **kwargs), torch_conv2d(x, weight.astype(np.float32), groups=6, **kwargs))


def test_diagonal_blocks_kept(rng):
    weight = rng.standard_normal((6, 9, 1, 1))
    dense = sc.block_diagonal(weight, 3).to_dense()
    mask = np.kron(np.eye(3), np.ones((2, 3))).astype(bool)
    np.testing.assert_array_equal(dense[mask], weight.reshape(6, 9)[mask])
    assert np.all(dense[~mask] == 0)


def test_products_cost_and_storage(rng):
    weight = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    op = sc.block_diagonal(weight, 2)
    cols = rng.standard_normal((36, 50)).astype(np.float32)
    y = rng.standard_normal((8, 50)).astype(np.float32)
    assert_close(op @ cols, op.to_dense() @ cols)
    assert_close(op.rmatmat(y), op.to_dense().T @ y)
    assert op.num_params == 8 * 2 * 9
    assert op.nbytes == 8 * 2 * 9 * 4
    assert op.cost(100).macs == 100 * 8 * 18


def test_error_non_increasing_as_groups_decrease(rng):
    weight = rng.standard_normal((16, 16, 3, 3))
    errors = [sc.relative_error(sc.block_diagonal(weight, g), weight) for g in (16, 8, 4, 2, 1)]
    assert all(a >= b for a, b in zip(errors, errors[1:])) and errors[-1] == 0


def test_save_load(tmp_path, rng):
    op = sc.block_diagonal(rng.standard_normal((8, 8, 3, 3)), 4)
    op.save(tmp_path / "b.npz")
    back = sc.load(tmp_path / "b.npz")
    assert back.groups == 4 and back.to_dense().tobytes() == op.to_dense().tobytes()


@pytest.mark.parametrize("groups, error, match", [(3, ValueError, "groups=3 must divide"),
                                                  (0, ValueError, "positive int"), (2.0, TypeError, "positive int")])
def test_bad_groups(rng, groups, error, match):
    with pytest.raises(error, match=match):
        sc.block_diagonal(rng.standard_normal((8, 8, 3, 3)), groups)
