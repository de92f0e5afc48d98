"""Weight-only operators run as their decoded weight by default; their own kernels stay available by name."""

import numpy as np
import pytest

import sparseconv as sc
from sparseconv.cost import dense_cost

from conftest import assert_close, torch_conv2d

BUILD = {"binary": lambda w: sc.binarize(w), "quantize": lambda w: sc.quantize(w, 4),
         "kmeans": lambda w: sc.kmeans_quantize(w, 8)}


@pytest.fixture
def layer(rng):
    return rng.standard_normal((12, 6, 3, 3)).astype(np.float32), rng.standard_normal((2, 6, 9, 8)).astype(np.float32)


@pytest.mark.parametrize("family", list(BUILD))
def test_every_method_is_the_same_layer(family, layer, rng):
    w, x = layer
    op = BUILD[family](w)
    assert op.method == op.methods[0] == "decoded" and len(op.methods) == 2
    expected = torch_conv2d(x, op.to_weight(), stride=2, padding=1)  # the independent oracle
    cols = rng.standard_normal((op.shape[1], 7)).astype(np.float32)
    for method in op.methods:
        op.method = method
        assert_close(sc.conv2d(x, op, stride=2, padding=1), expected)
        assert_close(op @ cols, op.to_dense().astype(np.float64) @ cols, np.float32)


@pytest.mark.parametrize("family", list(BUILD))
def test_cost_is_what_the_method_runs(family, layer):
    w, _ = layer
    op = BUILD[family](w)
    c_out, k = op.shape
    assert op.cost(10) == dense_cost(c_out, k, k, 10, 4)  # decoded: the dense product
    op.method = op.methods[1]
    own = op.cost(10)
    if family == "quantize":  # "blocks" dequantizes C_out*K entries on every call, then the same product
        assert own.mults == c_out * k * 10 + c_out * k
    else:  # add-only / accumulate: fewer multiplications than the dense product
        assert own.mults < c_out * k * 10


def test_the_decoded_weight_is_a_reported_cache(layer):
    w, x = layer
    op = sc.quantize(w, 4)
    assert op.cache_nbytes == 0
    sc.conv2d(x, op, padding=1)
    assert op.cache_nbytes >= w.nbytes  # at least the float copy, not in nbytes
    assert op.nbytes < w.nbytes / 4
    assert op.drop_cache().cache_nbytes == 0


def test_method_is_checked_and_not_saved(layer, tmp_path):
    w, _ = layer
    op = sc.binarize(w)
    with pytest.raises(ValueError, match=r"method must be one of \['decoded', 'add-only'\]"):
        op.method = "fast"
    with pytest.raises(TypeError, match="method must be one of"):
        op.method = 1
    op.method = "add-only"
    op.save(tmp_path / "b.npz")
    assert sc.load(tmp_path / "b.npz").method == "decoded"
    assert sc.DenseWeight(w).methods == ("direct",)
