"""The operator contract, over every registered family at every budget: linear operators behave as linear maps
(adjoint identity, @ equals to_dense(), scipy's svds finds the dense matrix's singular values); the ones that
quantize their input are not LinearOperators and refuse linear algebra at once."""

import numpy as np
import pytest
import scipy.sparse.linalg as spla

import sparseconv as sc

SHAPE = (12, 12, 3, 3)


def _cases():
    cases = []
    for fam in sc.registry.families():
        for label, params in fam.points(SHAPE):
            if "max_iter" in params:  # the contract holds for any factors: a few sweeps are enough
                params = dict(params, max_iter=3)
            cases.append((f"{fam.name}-{label}", fam.build, params))
    cases += [("dense", lambda w: sc.DenseWeight(w), {}),
              ("permutation", lambda w: sc.Permutation(np.random.default_rng(0).permutation(12)), {}),
              ("product", lambda w: sc.ProductWeight([sc.low_rank(w, 3), sc.channel_shuffle_permutation(12, 3)]), {})]
    return cases


CASES = _cases()


def _operator(build, params, dtype):
    w = np.random.default_rng(11).standard_normal(SHAPE).astype(dtype)
    return build(w, **params)


def _tol(op):
    return 1e-4 if np.dtype(op.dtype) == np.float32 else 1e-10


@pytest.mark.parametrize("name,build,params", CASES, ids=[c[0] for c in CASES])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_contract(name, build, params, dtype):
    op = _operator(build, params, dtype)
    rng = np.random.default_rng(3)
    cols = rng.standard_normal((op.shape[1], 5))
    y = rng.standard_normal((op.shape[0], 5))
    if isinstance(op, sc.NonlinearWeight):
        _check_refuses_linear_algebra(op)
        expected = op.to_dense().astype(np.float64) @ op.activations_of(cols)  # y = W @ q(cols), the definition
        np.testing.assert_allclose(op @ cols, expected, rtol=_tol(op), atol=_tol(op) * np.abs(expected).max())
        return
    assert isinstance(op, spla.LinearOperator)
    dense = op.to_dense().astype(np.float64)
    assert dense.shape == op.shape
    scale = np.abs(dense).max() * np.abs(cols).max() * op.shape[1]
    np.testing.assert_allclose(op @ cols, dense @ cols, rtol=0, atol=_tol(op) * scale)
    np.testing.assert_allclose(op.rmatmat(y), dense.T @ y, rtol=0, atol=_tol(op) * scale)
    # <op x, y> = <x, op^H y>, through scipy's own adjoint
    lhs = np.vdot(op.matmat(cols), y)
    rhs = np.vdot(cols, op.H.matmat(y))
    assert abs(lhs - rhs) <= _tol(op) * scale * cols.size
    # scipy's linear algebra sees the same matrix
    k = 2
    expected = np.linalg.svd(dense, compute_uv=False)[:k]
    found = np.sort(spla.svds(spla.aslinearoperator(op), k=k, return_singular_vectors=False, random_state=0))[::-1]
    np.testing.assert_allclose(found, expected, rtol=_tol(op) * 10, atol=_tol(op) * expected[0])


def _check_refuses_linear_algebra(op):
    assert not isinstance(op, spla.LinearOperator)
    for attempt in (lambda: op + op, lambda: 2 * op, lambda: op - op, lambda: -op, lambda: op.T, lambda: op.H,
                    lambda: op.rmatmat(np.ones((op.shape[0], 1))), lambda: op.adjoint(),
                    lambda: spla.aslinearoperator(op), lambda: op @ sc.DenseWeight(np.ones((op.shape[1], 2, 1, 1))),
                    lambda: sc.DenseWeight(np.ones((3, op.shape[0], 1, 1))) @ op, lambda: np.asarray(op),
                    lambda: spla.svds(op, k=1)):
        with pytest.raises(TypeError, match="not linear in its input"):
            attempt()


def test_both_kinds_are_covered():
    kinds = {isinstance(_operator(b, p, np.float32), sc.NonlinearWeight) for _, b, p in CASES}
    assert kinds == {True, False}
