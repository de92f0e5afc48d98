"""Pruning: every format's kernel against the dense matrix, the torch convention for amount."""

import numpy as np
import pytest
import scipy.sparse

import sparseconv as sc

from conftest import assert_close, torch_conv2d

CASES = [
    dict(structure="unstructured"),
    dict(structure="channel"),
    dict(structure="kernel"),
    dict(structure="block", block=(4, 3)),
    dict(structure="block", block=(2, 9)),
]


@pytest.fixture
def weight(rng):
    return rng.standard_normal((16, 8, 3, 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.9, 0.99, 1.0])
@pytest.mark.parametrize("case", CASES, ids=[c["structure"] + str(c.get("block", "")) for c in CASES])
def test_kernels_equal_dense(rng, weight, case, amount, dtype):
    op = sc.prune(weight.astype(dtype), amount, **case)
    cols = rng.standard_normal((72, 300)).astype(dtype)  # several column tiles
    assert_close(op @ cols, op.to_dense() @ cols, dtype)
    assert_close(op @ cols[:, :5], op.to_dense() @ cols[:, :5], dtype)  # fewer columns than threads' tiles


@pytest.mark.parametrize("n, m", [(2, 4), (1, 4), (4, 8), (3, 3)])
def test_nm(rng, weight, n, m):
    op = sc.prune(weight, structure="n:m", n=n, m=m)
    dense = op.to_dense()
    groups = dense.reshape(16, -1, m)
    assert np.all(np.count_nonzero(groups, axis=2) == n)
    # the kept entries are the n largest of each group
    mags = np.abs(weight.reshape(16, -1, m))
    kth = -np.sort(-mags, axis=2)[:, :, n - 1:n]
    assert np.all((groups != 0) == (mags >= kth))
    cols = rng.standard_normal((72, 200))
    assert_close(op @ cols, dense @ cols)
    assert op.nnz == 16 * 72 * n // m


def test_sparsity_levels(weight):
    for amount in (0.0, 0.5, 0.9, 0.99, 1.0):
        op = sc.prune(weight, amount)
        assert op.nnz == weight.size - round(amount * weight.size)
    assert sc.prune(weight, 10).nnz == weight.size - 10


def test_all_zero_layer(rng, weight):
    op = sc.prune(weight, 1.0)
    assert op.nnz == 0
    x = rng.standard_normal((1, 8, 6, 6))
    np.testing.assert_array_equal(sc.conv2d(x, op, padding=1), 0)
    assert op.cost(10).macs == 0


@pytest.mark.parametrize("case", CASES + [dict(structure="n:m")], ids=lambda c: c["structure"])
def test_conv_matches_torch(rng, weight, case):
    amount = None if case["structure"] == "n:m" else 0.6
    op = sc.prune(weight, amount, **case)
    x = rng.standard_normal((2, 8, 9, 7))
    bias = rng.standard_normal(16)
    for kwargs in (dict(padding=1), dict(stride=2)):
        assert_close(sc.conv2d(x, op, bias, **kwargs), torch_conv2d(x, op.to_weight(), bias, **kwargs))


def test_structures_zero_what_they_say(weight):
    ch = sc.prune(weight, 4, structure="channel").to_weight()
    assert np.sum(np.all(ch == 0, axis=(1, 2, 3))) == 4
    ker = sc.prune(weight, 0.25, structure="kernel").to_weight()
    assert np.sum(np.all(ker == 0, axis=(2, 3))) == 32
    blk = sc.prune(weight, 0.5, structure="block", block=(4, 4)).to_dense()
    tiles = blk.reshape(4, 4, 18, 4).transpose(0, 2, 1, 3)
    assert np.sum(np.all(tiles == 0, axis=(2, 3))) == 36


def test_error_non_decreasing_in_amount(weight):
    for case in CASES:
        errors = [sc.relative_error(sc.prune(weight, a, **case), weight) for a in np.linspace(0, 1, 11)]
        assert all(b >= a - 1e-12 for a, b in zip(errors, errors[1:])), case


def test_storage_and_cost(weight):
    op = sc.prune(weight.astype(np.float32), 0.75)
    nnz = op.nnz
    assert op.num_params == nnz
    assert op.nbytes == nnz * 4 + nnz * 4 + (16 + 1) * 4  # values, int32 column indices, int32 row pointers
    assert op.cost(100).macs == 100 * nnz
    bsr = sc.prune(weight.astype(np.float32), 0.5, structure="block", block=(4, 4))
    assert bsr.cost(1).macs == bsr.nnz == 36 * 16


def test_from_scipy_and_rmatmat(rng):
    matrix = scipy.sparse.random(6, 36, density=0.3, random_state=1, format="coo")
    op = sc.SparseWeight.from_scipy(matrix, (6, 4, 3, 3))
    assert op.format == "csr"
    y = rng.standard_normal((6, 3))
    assert_close(op.rmatmat(y), matrix.toarray().T @ y)


@pytest.mark.parametrize("case", CASES + [dict(structure="n:m")], ids=lambda c: c["structure"])
def test_save_load(tmp_path, weight, case):
    op = sc.prune(weight.astype(np.float32), None if case["structure"] == "n:m" else 0.5, **case)
    op.save(tmp_path / "s.npz")
    back = sc.load(tmp_path / "s.npz")
    assert back.format == op.format and back.structure == op.structure
    assert back.to_dense().tobytes() == op.to_dense().tobytes()


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(amount=1.5), ValueError, r"amount=1.5 as a fraction must be in \[0, 1\]"),
    (dict(amount=-0.1), ValueError, r"as a fraction must be in \[0, 1\]"),
    (dict(amount=1153), ValueError, r"amount=1153 as a count must be in \[0, 1152\]"),
    (dict(amount=-1), ValueError, "as a count"),
    (dict(amount="half"), TypeError, "amount must be an int count or a float fraction"),
    (dict(amount=None), ValueError, "needs amount"),
    (dict(amount=0.5, structure="rows"), ValueError, "structure must be one of"),
    (dict(amount=17, structure="channel"), ValueError, r"as a count must be in \[0, 16\]"),
    (dict(amount=0.5, structure="block", block=(3, 4)), ValueError, "must divide the matrix shape"),
    (dict(amount=0.4, structure="n:m"), ValueError, "amount must be None or that fraction"),
    (dict(structure="n:m", n=2, m=5), ValueError, "m=5 to divide the reduced dimension"),
    (dict(structure="n:m", n=5, m=4), ValueError, "1 <= n <= m"),
])
def test_bad_input(weight, kwargs, error, match):
    with pytest.raises(error, match=match):
        sc.prune(weight, **kwargs)


def test_inconsistent_arrays_are_refused(weight):
    op = sc.prune(weight, 0.5)
    bad = dict(op.arrays, indices=op.arrays["indices"] + 72)
    with pytest.raises(ValueError, match="do not describe a valid"):
        sc.SparseWeight(op.kernel_shape, "csr", bad)
    nm = sc.prune(weight, structure="n:m")
    with pytest.raises(ValueError, match="do not describe a valid"):
        sc.SparseWeight(nm.kernel_shape, "nm", dict(nm.arrays, pos=nm.arrays["pos"] + 4))


@pytest.mark.parametrize("level", ["portable", "avx2", "avx512"])
def test_csr_register_tiles_on_every_level(rng, monkeypatch, level):
    """A weight dense enough for the packed path: its rows by the register tile of each path this CPU has."""
    from sparseconv import _config

    if _config.ISA_LEVELS.index(_config.isa_level()) < _config.ISA_LEVELS.index(level):
        pytest.skip(f"this CPU has no {level}")
    native = _config.isa_level() == level
    monkeypatch.setenv("SPARSECONV_ISA", level)
    # float64 at the CPU's own level only: a lower level's tile is the same code at a narrower vector width,
    # and each (level, dtype) is a compilation of its own
    for dtype in (np.float32, np.float64) if native else (np.float32,):
        w = rng.standard_normal((12, 9, 3, 3)).astype(dtype)
        op = sc.prune(w, 0.5)
        assert op.nnz >= 4 * op.shape[1]  # the packed path
        for n_cols in (1, 63, 130, 300):  # tiles narrower than, equal to and past the register tile
            cols = rng.standard_normal((op.shape[1], n_cols)).astype(dtype)
            assert_close(op @ cols, op.to_dense() @ cols, dtype)
