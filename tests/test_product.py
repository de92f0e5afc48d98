"""Permutations and products of operators, against NumPy's multiplied-out matrices and torch pipelines."""

import numpy as np
import pytest

import sparseconv as sc

from conftest import assert_close, torch_conv2d


def test_channel_shuffle_matches_view_transpose(rng):
    torch = pytest.importorskip("torch")
    for channels, groups in ((6, 2), (6, 3), (12, 4), (8, 8), (5, 1)):
        x = rng.standard_normal((2, channels, 3, 4))
        expected = torch.from_numpy(x).view(2, groups, channels // groups, 3, 4).transpose(1, 2).reshape(x.shape)
        perm = sc.channel_shuffle_permutation(channels, groups)
        assert_close(sc.conv2d(x, perm), expected.numpy())
        assert_close(sc.conv2d(x, perm), torch.nn.functional.channel_shuffle(torch.from_numpy(x), groups).numpy())


def test_permutation_algebra(rng):
    perm = sc.Permutation(rng.permutation(7), np.float64)
    cols = rng.standard_normal((7, 5))
    assert_close(perm @ cols, perm.to_dense() @ cols)
    assert_close(perm.rmatmat(cols), perm.to_dense().T @ cols)
    np.testing.assert_array_equal(perm.inverse().to_dense() @ perm.to_dense(), np.eye(7))
    assert perm.num_params == 0 and perm.cost(10).flops == 0 and perm.cost(10).bytes_moved == 2 * 7 * 10 * 8


def _factors(rng, dtype=np.float64):
    """An IGC-like chain: 1x1 group conv (expand), shuffle, 3x3 depthwise, 1x1 group conv, shuffle back."""
    expand = sc.BlockDiagonalWeight(rng.standard_normal((12, 3, 1, 1)).astype(dtype), 2)  # 6 -> 12, 2 groups
    shuffle = sc.channel_shuffle_permutation(12, 2)
    depthwise = sc.BlockDiagonalWeight(rng.standard_normal((12, 1, 3, 3)).astype(dtype), 12)
    reduce = sc.BlockDiagonalWeight(rng.standard_normal((8, 3, 1, 1)).astype(dtype), 4)  # 12 -> 8, 4 groups
    mix = sc.DenseWeight(rng.standard_normal((8, 8, 1, 1)).astype(dtype))
    return [mix, reduce, depthwise, shuffle, expand]  # [A_k, ..., A_1]


def test_product_equals_numpy_multiplied_out(rng):
    factors = _factors(rng)
    op = sc.ProductWeight(factors)
    assert op.kernel_shape == (8, 6, 3, 3)
    mix, reduce, depthwise, shuffle, expand = (f.to_dense() for f in factors)
    eye9 = np.eye(9)
    expected = mix @ reduce @ depthwise @ np.kron(shuffle, eye9) @ np.kron(expand, eye9)
    assert_close(op.to_dense(), expected)
    cols = rng.standard_normal((54, 7))
    y = rng.standard_normal((8, 7))
    assert_close(op @ cols, expected @ cols)
    assert_close(op.rmatmat(y), expected.T @ y)
    assert np.isclose(np.vdot(op @ cols, y), np.vdot(cols, op.rmatmat(y)))


@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=1), dict(padding=2, dilation=2)])
def test_product_conv_matches_torch(rng, kwargs):
    factors = _factors(rng)
    op = sc.ProductWeight(factors)
    x = rng.standard_normal((2, 6, 9, 8))
    bias = rng.standard_normal(8)
    expected = torch_conv2d(x, op.to_weight(), bias, **kwargs)
    assert_close(sc.conv2d(x, op, bias, **kwargs), expected)
    # the same as the torch pipeline of the factors, one convolution after another
    mix, reduce, depthwise, shuffle, expand = factors
    y = torch_conv2d(x, expand.weight, groups=2)
    y = y[:, shuffle.perm]
    y = torch_conv2d(y, depthwise.weight, groups=12, **kwargs)
    y = torch_conv2d(y, reduce.weight, groups=4)
    assert_close(torch_conv2d(y, mix.weight, bias), expected)


def test_pointwise_chain_with_stride(rng):
    a = sc.DenseWeight(rng.standard_normal((5, 4, 1, 1)))
    b = sc.Permutation(rng.permutation(5), np.float64)
    op = sc.ProductWeight([b, a])
    x = rng.standard_normal((1, 4, 7, 7))
    assert_close(sc.conv2d(x, op, stride=2, padding=1), torch_conv2d(x, op.to_weight(), stride=2, padding=1))


def test_product_storage_and_cost(rng):
    factors = _factors(rng, np.float32)
    op = sc.ProductWeight(factors)
    assert op.num_params == sum(f.num_params for f in factors) == 64 + 24 + 108 + 36
    assert op.nbytes == sum(f.nbytes for f in factors)
    # op @ cols: the 1x1 factors before the 3x3 one act on each of the 9 taps of every column.
    # per column: expand 12*3 (x 9 taps), depthwise 12*9, reduce 8*3, mix 8*8 multiply-adds
    assert op.cost(100).macs == 36 * 9 * 100 + 108 * 100 + 24 * 100 + 64 * 100 == 52_000
    # conv2d, stride 2 on 10 x 10 (5 x 5 out): expand runs at the input's 100 pixels, the rest at 25
    cost = sc.conv_cost(op, (1, 6, 10, 10), stride=2, padding=1)
    assert cost.macs == 36 * 100 + 108 * 25 + 24 * 25 + 64 * 25 == 8_500
    assert op.conv_cost((1, 6, 10, 10), stride=2, padding=1) == cost
    assert op.dtype == np.float32


def test_product_save_load(tmp_path, rng):
    op = sc.ProductWeight(_factors(rng, np.float32))
    op.save(tmp_path / "p.npz")
    back = sc.load(tmp_path / "p.npz")
    assert [type(f) for f in back.factors] == [type(f) for f in op.factors]
    assert back.to_dense().tobytes() == op.to_dense().tobytes()


def test_bad_input(rng):
    with pytest.raises(ValueError, match="must be a permutation"):
        sc.Permutation([0, 0, 1])
    with pytest.raises(ValueError, match="groups=4 must divide channels=6"):
        sc.channel_shuffle_permutation(6, 4)
    with pytest.raises(ValueError, match="do not chain"):
        sc.ProductWeight([sc.DenseWeight(np.zeros((3, 5, 1, 1))), sc.DenseWeight(np.zeros((4, 2, 1, 1)))])
    with pytest.raises(ValueError, match="at most one factor may have a spatial kernel"):
        sc.ProductWeight([sc.DenseWeight(np.zeros((3, 3, 3, 3))), sc.DenseWeight(np.zeros((3, 3, 3, 3)))])
    with pytest.raises(TypeError, match="non-empty list of WeightOperator"):
        sc.ProductWeight([np.zeros((3, 3, 1, 1))])


def _igc1(rng, L, M, perm):
    """Primary group conv (L groups of M, 3x3), permutation, secondary (M groups of L, 1x1), inverse permutation."""
    g = L * M
    primary = sc.BlockDiagonalWeight(rng.standard_normal((g, M, 3, 3)), L)
    secondary = sc.BlockDiagonalWeight(rng.standard_normal((g, L, 1, 1)), M)
    return sc.ProductWeight([perm.inverse(), secondary, perm, primary])


def _brute_force_paths(op):
    """Enumerate every chain of channels through the factors' nonzero patterns, one factor at a time."""
    applied = op.factors[::-1]
    c_in = op.kernel_shape[1]
    counts = np.zeros((op.kernel_shape[0], c_in), np.int64)
    for c in range(c_in):
        frontier = {c: 1}
        for f in applied:
            pattern = np.abs(f.to_weight()).sum(axis=(2, 3)) != 0
            nxt = {}
            for ch, k in frontier.items():
                for o in np.flatnonzero(pattern[:, ch]):
                    nxt[o] = nxt.get(o, 0) + k
            frontier = nxt
        for o, k in frontier.items():
            counts[o, c] = k
    return counts


@pytest.mark.parametrize("L, M", [(2, 3), (3, 2), (4, 4), (1, 5), (5, 1)])
def test_igc_paths_and_complementary(rng, L, M):
    g = L * M
    interleaved = _igc1(rng, L, M, sc.channel_shuffle_permutation(g, L))
    np.testing.assert_array_equal(sc.paths(interleaved), _brute_force_paths(interleaved))
    assert sc.complementary(interleaved) == "strict"
    identity = _igc1(rng, L, M, sc.Permutation(np.arange(g), np.float64))
    np.testing.assert_array_equal(sc.paths(identity), _brute_force_paths(identity))
    assert sc.complementary(identity) == (None if L > 1 and M > 1 else "strict")


def test_loose_and_dense_paths(rng):
    dense = sc.DenseWeight(rng.standard_normal((4, 4, 1, 1)))
    chain = sc.ProductWeight([dense, dense])
    assert sc.complementary(chain) == "loose" and np.all(sc.paths(chain) == 4)
    with pytest.raises(TypeError, match="WeightOperator"):
        sc.paths(np.eye(3))
