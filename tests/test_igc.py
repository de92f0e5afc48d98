"""IGCV1/2/3 as products: multiplied out, against torch pipelines, their path conditions and the theory's counts."""

import itertools
import math

import numpy as np
import pytest

import sparseconv as sc
from sparseconv import theory

from conftest import assert_close, torch_conv2d


def _shuffle(x, groups):
    n, c, h, w = x.shape
    return x.reshape(n, groups, c // groups, h, w).transpose(0, 2, 1, 3, 4).reshape(n, c, h, w)


@pytest.mark.parametrize("L, M", [(2, 4), (4, 2), (3, 3), (1, 5), (5, 1)])
def test_igcv1_multiplied_out_and_torch_pipeline(rng, L, M):
    op = sc.IGCV1.random(L, M, seed=1, dtype=np.float64)
    G = L * M
    P = sc.channel_shuffle_permutation(G, L).to_dense()
    Wp = sc.block_diagonal(np.zeros((G, G, 3, 3)), L)  # only for the shape check
    assert op.primary.kernel_shape == Wp.kernel_shape
    expected = P.T @ op.secondary.to_dense() @ P @ op.primary.to_dense()
    assert_close(op.to_dense(), expected)
    x = rng.standard_normal((2, G, 8, 7))
    y = torch_conv2d(x, op.primary.weight, padding=1, groups=L)
    y = _shuffle(y, L)
    y = torch_conv2d(y, op.secondary.weight, groups=M)
    y = _shuffle(y, M)  # the inverse of a shuffle with L groups on L*M channels
    assert_close(sc.conv2d(x, op, padding=1), y)
    assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(x, op.to_weight(), padding=1))
    assert sc.complementary(op) == "strict"
    assert op.num_params == theory.igcv1_params(L, M, 9)


def test_igcv1_extremes(rng):
    # L = 1: a regular convolution followed by a per-channel scale
    op = sc.IGCV1.random(1, 6, seed=2, dtype=np.float64)
    scale = op.secondary.weight.reshape(6)
    assert_close(op.to_weight(), scale[:, None, None, None] * op.primary.weight)
    # M = 1: depthwise, then a dense 1x1 (Xception / MobileNet)
    op = sc.IGCV1.random(6, 1, seed=3, dtype=np.float64)
    x = rng.standard_normal((1, 6, 7, 7))
    y = torch_conv2d(torch_conv2d(x, op.primary.weight, padding=1, groups=6), op.secondary.weight)
    assert_close(sc.conv2d(x, op, padding=1), y)


@pytest.mark.parametrize("C, sizes", [(8, (2, 2, 2)), (12, (3, 4)), (12, (4, 3)), (16, (4, 4)), (8, (8,))])
def test_igcv2_strict(rng, C, sizes):
    op = sc.IGCV2.random(C, sizes, seed=4, dtype=np.float64)
    assert sc.complementary(op) == "strict"
    assert op.num_params == theory.igcv2_params(C, 9, sizes)
    x = rng.standard_normal((2, C, 6, 5))
    assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(x, op.to_weight(), padding=1))
    cols = rng.standard_normal((C * 9, 4))
    expected = np.eye(C)
    for f in op.factors[::-1][1:]:
        expected = f.to_dense() @ expected
    assert_close(op @ cols, expected @ op.depthwise.to_dense() @ cols)


def test_igcv2_product_not_c_is_allowed_and_reported(rng):
    op = sc.IGCV2.random(8, (2, 2), seed=5, dtype=np.float64)  # 2 * 2 != 8
    assert sc.complementary(op) is None
    assert op.num_params == theory.igcv2_params(8, 9, (2, 2))


@pytest.mark.parametrize("groups", [(2, 2), (4, 3), (1, 1), (8, 4)])
def test_igcv3(rng, groups):
    op = sc.IGCV3.random(8, 12, expansion=6, groups=groups, seed=6, dtype=np.float64)
    assert op.kernel_shape == (12, 8, 3, 3)
    assert sc.complementary(op) == "loose"
    assert op.num_params == theory.igcv3_params(8, 12, 6, groups, 9)
    x = rng.standard_normal((2, 8, 7, 6))
    for kwargs in (dict(padding=1), dict(stride=2, padding=1)):
        expected_y = torch_conv2d(x, op.expand.weight, groups=groups[0])
        expected_y = _shuffle(expected_y, groups[0])
        expected_y = torch_conv2d(expected_y, op.depthwise.weight, groups=48, **kwargs)
        expected_y = torch_conv2d(expected_y, op.reduce.weight, groups=groups[1])
        assert_close(sc.conv2d(x, op, **kwargs), expected_y)


def test_igcv3_without_enough_interleaving_is_not_complementary():
    # E / G2 = 2 expanded channels per reducing group, from only 2 of the G1 = 8 expanding groups
    op = sc.IGCV3.random(8, 12, expansion=1, groups=(8, 4))
    assert sc.complementary(op) is None


@pytest.mark.parametrize("make", [
    lambda: sc.IGCV1.random(2, 3),
    lambda: sc.IGCV2.random(8, (2, 4)),
    lambda: sc.IGCV3.random(4, 8, expansion=2, groups=(2, 4)),
])
def test_save_load(tmp_path, make):
    op = make()
    op.save(tmp_path / "igc.npz")
    back = sc.load(tmp_path / "igc.npz")
    assert type(back) is type(op)
    assert back.to_dense().tobytes() == op.to_dense().tobytes()


def test_theory_counts_match_operators():
    for L, M, k in itertools.product((1, 2, 3, 4), (1, 2, 5), (1, 3)):
        assert theory.igcv1_params(L, M, k * k) == sc.IGCV1.random(L, M, kernel_size=k).num_params
    assert theory.regular_params(16, 9) == sc.DenseWeight(np.zeros((16, 16, 3, 3))).num_params
    for C, sizes in ((12, (2, 6)), (12, (3, 2, 2)), (16, (2, 8)), (9, (3, 3))):
        assert theory.igcv2_params(C, 9, sizes) == sc.IGCV2.random(C, sizes).num_params
    for c_in, c_out, t, g in ((8, 8, 6, (2, 2)), (4, 8, 2, (4, 2)), (6, 12, 1, (3, 3))):
        assert theory.igcv3_params(c_in, c_out, t, g, 9) == sc.IGCV3.random(c_in, c_out, t, g).num_params


def test_width_inequality():
    for C, M in itertools.product((16, 32, 64, 128), (2, 4, 8)):
        L, G, params = theory.igcv1_equal_width(C, 9, M)
        assert params <= theory.regular_params(C, 9) < theory.igcv1_params(L + 1, M, 9)
        if L >= 2:
            assert G > C


def test_max_width_brute_force():
    for budget in (100, 1000, 9 * 64 * 64):
        best = max((L * M, L, M) for L in range(1, 200) for M in range(1, 60)
                   if theory.igcv1_params(L, M, 9) <= budget)
        G, L, M = theory.igcv1_max_width(budget, 9)
        assert G == best[0] and theory.igcv1_params(L, M, 9) <= budget


def test_igcv2_balanced_and_optimal():
    K, params = theory.igcv2_balanced(64, 9, 4)
    assert np.isclose(K, 4.0) and np.isclose(params, 64 * 9 + 3 * 64 * 4)
    for C in (8, 12, 36, 64, 96):
        sizes, params = theory.igcv2_optimal_factors(C, 9)
        assert math.prod(sizes) == C
        brute = min(theory.igcv2_params(C, 9, s) for s in _all_factorizations(C))
        assert params == brute
    real_opt = min(range(2, 10), key=lambda n: theory.igcv2_balanced(64, 9, n)[1])
    assert abs((real_opt - 1) - math.log(64)) <= 1


def _all_factorizations(n):
    if n == 1:
        return [()]
    out = []
    for k in range(2, n + 1):
        if n % k == 0:
            out += [(k,) + rest for rest in _all_factorizations(n // k)]
    return out


@pytest.mark.parametrize("call, match", [
    (lambda: sc.IGCV1(np.zeros((6, 3, 3, 3)), np.zeros((6, 3, 1, 1)), 2, 3), "secondary must have shape"),
    (lambda: sc.IGCV1(np.zeros((6, 2, 3, 3)), np.zeros((6, 2, 1, 1)), 2, 3), "primary must have shape"),
    (lambda: sc.IGCV1.random(0, 3), "L must be a positive int"),
    (lambda: sc.IGCV2.random(8, (3,)), "branch size 3 must divide channels=8"),
    (lambda: sc.IGCV3.random(6, 8, expansion=2, groups=(4, 2)), "must divide"),
    (lambda: theory.igcv2_balanced(8, 9, 1), "n_factors must be >= 2"),
    (lambda: theory.igcv1_max_width(5, 9), "below the smallest IGCV1"),
])
def test_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("L, M", [(2, 4), (4, 2), (3, 3)])
def test_igcv1_fit(rng, L, M):
    target = sc.IGCV1.random(L, M, seed=7, dtype=np.float64)
    fit = sc.igcv1(target.to_weight(), L, M)
    assert sc.relative_error(fit, target.to_weight()) < 1e-5
    dense = rng.standard_normal((L * M, L * M, 3, 3))
    fit = sc.igcv1(dense, L, M, max_iter=30)
    assert all(b <= a + 1e-12 for a, b in zip(fit.history, fit.history[1:]))
    assert np.isclose(fit.history[-1], sc.relative_error(fit, dense), rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(stride=2, padding=1), dict(padding=2, dilation=2)])
def test_igcv1_fused_secondary_with_bias(rng, dtype, kwargs):
    """IGCV1's conv2d folds both permutations into strides; same as the operator's dense weight."""
    op = sc.IGCV1.random(4, 3, seed=8, dtype=dtype)
    x = rng.standard_normal((2, 12, 9, 10)).astype(dtype)
    bias = rng.standard_normal(12).astype(dtype)
    y = sc.conv2d(x, op, bias, **kwargs)
    assert y.dtype == dtype
    assert_close(y, torch_conv2d(x, op.to_weight(), bias, **kwargs), dtype)


def _non_increasing(history):
    return all(b <= a * (1 + 1e-10) + 1e-14 for a, b in zip(history, history[1:]))


@pytest.mark.parametrize("C, sizes", [(8, (2, 2, 2)), (12, (3, 4)), (16, (4, 4)), (8, (2, 4))])
def test_igcv2_fit(rng, C, sizes):
    target = sc.IGCV2.random(C, sizes, seed=7, dtype=np.float64)
    fit = sc.igcv2(target.to_weight(), sizes, tol=1e-14)
    assert fit.branch_sizes == tuple(sizes)
    assert sc.relative_error(fit, target.to_weight()) < 1e-5
    dense = rng.standard_normal((C, C, 3, 3))
    fit = sc.igcv2(dense, sizes, max_iter=20)
    assert _non_increasing(fit.history)
    assert np.isclose(fit.history[-1], sc.relative_error(fit, dense), rtol=1e-6)


@pytest.mark.parametrize("c_in, c_out, t, groups", [(8, 12, 2, (2, 2)), (4, 8, 2, (2, 4)), (8, 8, 1, (2, 2))])
def test_igcv3_fit(rng, c_in, c_out, t, groups):
    target = sc.IGCV3.random(c_in, c_out, t, groups, seed=7, dtype=np.float64)
    fit = sc.igcv3(target.to_weight(), t, groups, max_iter=500, tol=1e-15)
    assert fit.groups == groups and fit.kernel_shape == (c_out, c_in, 3, 3)
    assert sc.relative_error(fit, target.to_weight()) < 1e-5
    dense = rng.standard_normal((c_out, c_in, 3, 3))
    fit = sc.igcv3(dense, t, groups, max_iter=20)
    assert _non_increasing(fit.history)
    assert np.isclose(fit.history[-1], sc.relative_error(fit, dense), rtol=1e-6)


def test_fit_by_conjugate_gradients(rng, monkeypatch):
    """The coupled factors' CG solver (used past a size limit) also recovers products and never raises the error."""
    from sparseconv import _als

    monkeypatch.setattr(_als, "_DIRECT_MAX_PARAMS", 0)
    target = sc.IGCV2.random(8, (2, 2, 2), seed=7, dtype=np.float64)
    assert sc.relative_error(sc.igcv2(target.to_weight(), (2, 2, 2), tol=1e-14), target.to_weight()) < 1e-5
    fit = sc.igcv3(rng.standard_normal((8, 8, 3, 3)), 2, (2, 2), max_iter=15)
    assert _non_increasing(fit.history)


def test_fit_keeps_dtype_and_runs_in_conv2d(rng):
    dense = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    x = rng.standard_normal((1, 8, 6, 6)).astype(np.float32)
    for op in (sc.igcv1(dense, 2, 4, max_iter=3), sc.igcv2(dense, (2, 4), max_iter=3),
               sc.igcv3(dense, 2, (2, 2), max_iter=3)):
        assert op.dtype == np.float32
        assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(x, op.to_weight(), padding=1), np.float32)


@pytest.mark.parametrize("call, match", [
    (lambda: sc.igcv1(np.zeros((8, 8, 3, 3)), 2, 3), r"C_out = C_in = L\*M = 6"),
    (lambda: sc.igcv1(np.zeros((6, 4, 3, 3)), 2, 3), "must be square"),
    (lambda: sc.igcv2(np.zeros((8, 6, 3, 3)), (2, 4)), "must be square"),
    (lambda: sc.igcv2(np.zeros((8, 8, 3, 3)), (3,)), "branch size 3 must divide"),
    (lambda: sc.igcv3(np.zeros((8, 6, 3, 3)), 2, (4, 2)), "must divide"),
    (lambda: sc.igcv3(np.zeros((8, 8, 3, 3)), 2, (2, 2), max_iter=0), "max_iter must be a positive int"),
    (lambda: sc.igcv2(np.zeros((8, 8, 3, 3)), (2, 4), tol=-1.0), "tol must be"),
])
def test_fit_bad_input(call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kwargs", [dict(padding=1), dict(padding=0), dict(padding=2, dilation=2),
                                    dict(padding="same")])
@pytest.mark.parametrize("L, M", [(4, 3), (2, 8), (8, 1), (2, 12), (3, 17), (2, 20)],
                         ids=["M3", "M8", "M1", "M12", "M17-gemm", "M20-gemm"])
def test_igcv1_fused_kernel_on_wide_images(rng, dtype, kwargs, L, M):
    """Outputs at least 28 wide take the fused one-pass kernel (primary and secondary per band of rows):
    register tiles for primary groups of M <= 16 channels (any M, rows padded to the tile), GEMMs above."""
    from sparseconv import igc

    op = sc.IGCV1.random(L, M, seed=9, dtype=dtype)
    x = rng.standard_normal((3, L * M, 31, 33)).astype(dtype)
    bias = rng.standard_normal(L * M).astype(dtype)
    assert sc.conv_output_shape(x.shape, 3, **kwargs)[-1] >= igc._FUSED_MIN_WIDTH
    y = sc.conv2d(x, op, bias, **kwargs)
    assert_close(y, torch_conv2d(x, op.to_weight(), bias, **kwargs), dtype)
    small = sc.conv2d(x, op, bias, workspace=op._fused_workspace(x, **kwargs) - 1, **kwargs)  # two-pass path
    assert_close(small, y, dtype)


def test_igcv1_two_groups_of_128_take_two_passes(rng):
    """L = 2, M = 128 on a wide output: the primary by conv2d's grouped pixel tiles, then the secondary."""
    from sparseconv import igc

    op = sc.IGCV1.random(2, 128, seed=4)
    x = rng.standard_normal((1, 256, 16, 30)).astype(np.float32)
    assert op.M >= igc._TWO_PASS_MIN_M and x.shape[-1] >= igc._FUSED_MIN_WIDTH
    assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(x, op.to_weight(), padding=1), np.float32)


@pytest.mark.parametrize("level", ["portable", "avx2", "avx512"])
def test_igcv1_register_tiles_on_every_level(rng, monkeypatch, level):
    """The tile's paths (512-bit, 256-bit with FMA, 128-bit) that this CPU has, against torch."""
    from sparseconv import _config
    from sparseconv._kernels import tile

    if _config.ISA_LEVELS.index(_config.isa_level()) < _config.ISA_LEVELS.index(level):
        pytest.skip(f"this CPU has no {level}")
    native = _config.isa_level() == level
    monkeypatch.setenv("SPARSECONV_ISA", level)
    assert tile.float_path() == level or (_config.isa_level() == "portable" and tile.float_path() == "portable")
    # float64 at the CPU's own level only: a lower level's tile is the same code at a narrower vector width,
    # and each (level, dtype) is a compilation of its own
    for dtype in (np.float32, np.float64) if native else (np.float32,):
        op = sc.IGCV1.random(4, 4, seed=3, dtype=dtype)
        x = rng.standard_normal((2, 16, 29, 30)).astype(dtype)
        assert_close(sc.conv2d(x, op, padding=1), torch_conv2d(x, op.to_weight(), padding=1), dtype)
