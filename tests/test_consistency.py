"""One convention across the API: the small inconsistencies a user tripped on, each pinned."""

import inspect

import numpy as np
import pytest

import sparseconv as sc

W = np.random.default_rng(0).standard_normal((8, 8, 3, 3)).astype(np.float32)
X = np.random.default_rng(1).standard_normal((1, 8, 6, 6)).astype(np.float32)


def test_n_m_pruning_accepts_its_own_amount():
    expected = sc.prune(W, structure="n:m", n=2, m=4)
    same = sc.prune(W, amount=0.5, structure="n:m", n=2, m=4)  # 0.5 = 1 - 2/4
    assert np.array_equal(same.to_dense(), expected.to_dense())
    assert sc.prune(W, amount=0.75, structure="n:m", n=1, m=4).density == pytest.approx(0.25)
    with pytest.raises(ValueError, match=r"1 - 2/4"):
        sc.prune(W, amount=0.6, structure="n:m", n=2, m=4)


@pytest.mark.parametrize("call", [
    lambda: sc.conv2d(X, W, stride=1.5), lambda: sc.conv2d(X, W, groups=1.5), lambda: sc.conv2d(X, W, groups=True),
    lambda: sc.conv2d(X, W, workspace=2.0), lambda: sc.quantize(W, bits=8.0), lambda: sc.quantize(W, scheme=3),
    lambda: sc.kmeans_quantize(W, n_clusters=4.0), lambda: sc.kmeans_quantize(W, init=None),
    lambda: sc.block_diagonal(W, 2.0), lambda: sc.low_rank(W, rank=2.0), lambda: sc.low_rank(W, energy="all"),
    lambda: sc.binarize(W, activations=1.0), lambda: sc.binarize(W, activations=True), lambda: sc.binarize(W, scale=1),
    lambda: sc.IGCV1.random(2.0, 4),
    lambda: sc.igcv1(W, 2, 4, max_iter=1.5), lambda: sc.prune(W, 0.5, structure=2),
    lambda: sc.channel_shuffle_permutation(8, 2.0), lambda: sc.theory.igcv1_params(4, 2.5, 9),
])
def test_a_wrong_type_is_a_type_error(call):
    with pytest.raises(TypeError):
        call()


@pytest.mark.parametrize("call", [
    lambda: sc.conv2d(X, W, stride=0), lambda: sc.conv2d(X, W, groups=0), lambda: sc.conv2d(X, W, workspace=0),
    lambda: sc.quantize(W, bits=17), lambda: sc.quantize(W, scheme="log"), lambda: sc.kmeans_quantize(W, bits=9),
    lambda: sc.kmeans_quantize(W, init="random"), lambda: sc.block_diagonal(W, 3), lambda: sc.low_rank(W, rank=0),
    lambda: sc.low_rank(W, energy=1.5), lambda: sc.binarize(W, activations=2), lambda: sc.binarize(W, scale="row"),
    lambda: sc.IGCV1.random(0, 4), lambda: sc.igcv1(W, 2, 4, max_iter=0), lambda: sc.prune(W, 0.5, structure="rows"),
    lambda: sc.channel_shuffle_permutation(8, 3), lambda: sc.theory.igcv1_params(4, 0, 9),
])
def test_a_wrong_value_is_a_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_per_channel_defaults_agree():
    for fn in (sc.quantize, sc.kmeans_quantize):
        assert inspect.signature(fn).parameters["per_channel"].default is True
    assert sc.kmeans_quantize(W, n_clusters=4).codebook.shape == (8, 4)
    assert sc.quantize(W, 4).scale.shape == (8,) and len(set(sc.quantize(W, 4).scale)) > 1


def test_activations_is_a_bit_width_in_both():
    assert sc.binarize(W).activations is None and sc.quantize(W).activations is None
    assert sc.binarize(W, activations=1).activations == 1 and sc.quantize(W, activations=8).activations == 8
    for a, b in ((None, "float"), (1, "binary")):
        assert type(sc.binarize(W, activations=a)) is type(sc.binarize(W, activations=b))
        assert np.array_equal(sc.conv2d(X, sc.binarize(W, activations=a)), sc.conv2d(X, sc.binarize(W, activations=b)))
    for fn in (sc.binarize, sc.quantize):
        assert inspect.signature(fn).parameters["activations"].default is None


def test_the_random_designs_share_their_keywords():
    for cls in (sc.IGCV1, sc.IGCV2, sc.IGCV3):
        params = inspect.signature(cls.random).parameters
        keyword_only = [n for n, p in params.items() if p.kind is p.KEYWORD_ONLY]
        assert keyword_only == ["kernel_size", "seed", "dtype"], cls.__name__
    ops = [sc.IGCV1.random(4, 4, kernel_size=5, seed=3, dtype=np.float64),
           sc.IGCV2.random(16, (4, 4), kernel_size=5, seed=3, dtype=np.float64),
           sc.IGCV3.random(16, 16, 2, (2, 2), kernel_size=5, seed=3, dtype=np.float64)]
    assert all(op.kernel_shape == (16, 16, 5, 5) and op.dtype == np.float64 for op in ops)
    with pytest.raises(TypeError):
        sc.IGCV1.random(4, 4, 5)  # kernel_size by keyword only, as for the other two
