"""The weight-operator algebra on its first member, DenseWeight."""

import numpy as np
import pytest
from scipy.sparse.linalg import aslinearoperator, svds

import sparseconv as sc

from conftest import assert_close


@pytest.fixture
def weight(rng):
    return rng.standard_normal((6, 4, 3, 2))


def test_shapes_and_dense(weight):
    op = sc.DenseWeight(weight)
    assert op.shape == (6, 24)
    assert op.kernel_shape == (6, 4, 3, 2)
    assert op.dtype == np.float64
    np.testing.assert_array_equal(op.to_dense(), weight.reshape(6, 24))
    np.testing.assert_array_equal(op.to_weight(), weight)
    assert op.num_params == weight.size
    assert op.nbytes == weight.nbytes
    assert sc.DenseWeight(weight.astype(np.float32)).nbytes == weight.size * 4


def test_products(rng, weight):
    op = sc.DenseWeight(weight)
    cols = rng.standard_normal((24, 7))
    y = rng.standard_normal((6, 7))
    dense = weight.reshape(6, 24)
    assert_close(op @ cols, dense @ cols)
    assert_close(op.matmat(cols), dense @ cols)
    assert_close(op @ cols[:, 0], dense @ cols[:, 0])
    assert_close(op.rmatmat(y), dense.T @ y)
    assert_close(op.H @ y, dense.T @ y)


def test_rmatmat_is_the_adjoint(rng, weight):
    """<op @ c, y> == <c, op.rmatmat(y)>."""
    op = sc.DenseWeight(weight)
    c = rng.standard_normal((24, 5))
    y = rng.standard_normal((6, 5))
    assert np.isclose(np.vdot(op @ c, y), np.vdot(c, op.rmatmat(y)), rtol=1e-12)


def test_scipy_linear_operator(rng, weight):
    op = sc.DenseWeight(weight)
    lin = aslinearoperator(op)
    v = rng.standard_normal(24)
    assert_close(lin.matvec(v), weight.reshape(6, 24) @ v)
    s = svds(lin, k=2, return_singular_vectors=False, random_state=0)
    expected = np.linalg.svd(weight.reshape(6, 24), compute_uv=False)[:2]
    np.testing.assert_allclose(np.sort(s)[::-1], expected, rtol=1e-8)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_bit_exact(tmp_path, rng, dtype):
    weight = rng.standard_normal((5, 3, 3, 3)).astype(dtype)
    weight[0, 0, 0, 0] = np.nextafter(dtype(1), dtype(2))
    op = sc.DenseWeight(weight)
    op.save(tmp_path / "w.npz")
    back = sc.load(tmp_path / "w.npz")
    assert type(back) is sc.DenseWeight
    assert back.dtype == op.dtype and back.kernel_shape == op.kernel_shape
    assert back.to_dense().tobytes() == op.to_dense().tobytes()
    with np.load(tmp_path / "w.npz", allow_pickle=False) as data:
        assert all(data[k].dtype != object for k in data.files)


def test_relative_error(rng, weight):
    op = sc.DenseWeight(weight)
    assert sc.relative_error(op, weight) == 0.0
    noisy = sc.DenseWeight(weight * 1.1)
    assert np.isclose(sc.relative_error(noisy, weight), 0.1)
    assert np.isclose(sc.relative_error(noisy, weight.reshape(6, -1)), 0.1)
    assert sc.relative_error(sc.DenseWeight(np.zeros_like(weight)), np.zeros_like(weight)) == 0.0
    assert sc.relative_error(op, np.zeros_like(weight)) == float("inf")


def test_as_operator(weight):
    op = sc.as_operator(weight)
    assert isinstance(op, sc.DenseWeight)
    assert sc.as_operator(op) is op


def test_repr(weight):
    assert "DenseWeight(C_out=6, C_in=4, kernel=(3, 2)" in repr(sc.DenseWeight(weight))
