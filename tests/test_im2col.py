"""im2col against the readable NumPy reference and torch's unfold; col2im as its exact adjoint."""

import numpy as np
import pytest

import sparseconv as sc
from sparseconv import reference

from conftest import assert_close

GEOMETRIES = [
    dict(kernel_size=3),
    dict(kernel_size=3, padding=1),
    dict(kernel_size=(3, 2), stride=(2, 1), padding=(1, 0)),
    dict(kernel_size=3, stride=2, padding=2, dilation=2),
    dict(kernel_size=4, padding="same"),
    dict(kernel_size=1),
    dict(kernel_size=5, stride=3, padding=1),
]


@pytest.mark.parametrize("geom", GEOMETRIES, ids=[str(i) for i in range(len(GEOMETRIES))])
def test_im2col_matches_reference(rng, geom):
    x = rng.standard_normal((3, 4, 9, 11))
    cols = sc.im2col(x, **geom)
    np.testing.assert_array_equal(cols, reference.im2col(x, **geom))


def test_im2col_matches_torch_unfold(rng):
    torch = pytest.importorskip("torch")
    x = rng.standard_normal((2, 3, 8, 10)).astype(np.float32)
    cols = sc.im2col(x, (3, 2), stride=(1, 2), padding=1, dilation=(2, 1))
    unf = torch.nn.functional.unfold(torch.from_numpy(x), (3, 2), dilation=(2, 1), padding=1, stride=(1, 2))
    # unfold gives (N, C*kH*kW, L); sparseconv puts the batch into the columns
    expected = unf.numpy().transpose(1, 0, 2).reshape(cols.shape[0], -1)
    np.testing.assert_array_equal(cols, expected)


def test_conv_is_weight_times_columns(rng):
    """The library's thesis on a 4-channel 3x3 example: each column has 36 entries."""
    x = rng.standard_normal((1, 4, 6, 6))
    weight = rng.standard_normal((5, 4, 3, 3))
    cols = sc.im2col(x, 3, padding=1)
    assert cols.shape == (36, 36)
    y = (weight.reshape(5, -1) @ cols).reshape(5, 1, 6, 6).transpose(1, 0, 2, 3)
    assert_close(y, reference.conv2d(x, weight, padding=1))


@pytest.mark.parametrize("geom", GEOMETRIES, ids=[str(i) for i in range(len(GEOMETRIES))])
def test_col2im_is_the_adjoint(rng, geom):
    """<im2col(x), c> == <x, col2im(c)> for random x and c."""
    shape = (2, 3, 10, 9)
    x = rng.standard_normal(shape)
    cols = sc.im2col(x, **geom)
    c = rng.standard_normal(cols.shape)
    lhs = np.vdot(cols, c)
    rhs = np.vdot(x, sc.col2im(c, shape, **geom))
    assert abs(lhs - rhs) <= 1e-12 * max(1.0, abs(lhs)) * cols.size ** 0.5


@pytest.mark.parametrize("geom", GEOMETRIES, ids=[str(i) for i in range(len(GEOMETRIES))])
def test_col2im_matches_reference(rng, geom):
    shape = (2, 3, 10, 9)
    n_rows, n_cols = sc.im2col(np.zeros(shape), **geom).shape
    c = rng.standard_normal((n_rows, n_cols)).astype(np.float32)
    out = sc.col2im(c, shape, **geom)
    assert out.dtype == np.float32
    assert_close(out, reference.col2im(c.astype(np.float64), shape, **geom), np.float32)


def test_col2im_sums_overlaps():
    """Every pixel of an all-ones image is covered by as many patches as taps reach it."""
    shape = (1, 1, 5, 5)
    ones = sc.col2im(np.ones((9, 25)), shape, 3, padding=1)
    expected = np.array([[4, 6, 6, 6, 4], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [6, 9, 9, 9, 6], [4, 6, 6, 6, 4]])
    np.testing.assert_array_equal(ones[0, 0], expected)


def test_col2im_rejects_wrong_shape():
    with pytest.raises(ValueError, match="cols must have shape"):
        sc.col2im(np.zeros((9, 24)), (1, 1, 5, 5), 3, padding=1)
    with pytest.raises(ValueError, match="x_shape"):
        sc.col2im(np.zeros((9, 25)), (5, 5), 3)
