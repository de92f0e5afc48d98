"""Bad input gets a TypeError or ValueError that names the argument, never a numba traceback."""

import numpy as np
import pytest

import sparseconv as sc

X = np.zeros((1, 4, 8, 8))
W = np.zeros((6, 4, 3, 3))


@pytest.mark.parametrize("call, error, match", [
    (lambda: sc.conv2d(np.zeros((4, 8, 8)), W), ValueError, "x must be 4-D"),
    (lambda: sc.conv2d(X, np.zeros((6, 4, 3))), ValueError, "weight must be 4-D"),
    (lambda: sc.conv2d(X, np.zeros((6, 3, 3, 3))), ValueError, "C_in"),
    (lambda: sc.conv2d(X, np.zeros((6, 2, 3, 3)), groups=3), ValueError, "groups=3 must divide"),
    (lambda: sc.conv2d(X, np.zeros((6, 1, 3, 3)), groups=2), ValueError, "C_in/groups"),
    (lambda: sc.conv2d(X, W, groups=0), ValueError, "groups must be a positive int"),
    (lambda: sc.conv2d(X, W, groups=1.5), TypeError, "groups must be a positive int"),
    (lambda: sc.conv2d(X, W, stride=0), ValueError, "stride must be >= 1"),
    (lambda: sc.conv2d(X, W, stride=(1, -1)), ValueError, "stride must be >= 1"),
    (lambda: sc.conv2d(X, W, dilation=0), ValueError, "dilation must be >= 1"),
    (lambda: sc.conv2d(X, W, padding=-1), ValueError, "padding must be >= 0"),
    (lambda: sc.conv2d(X, W, padding="full"), ValueError, "padding must be 'same', 'valid'"),
    (lambda: sc.conv2d(X, W, stride=2, padding="same"), ValueError, "padding='same' needs stride 1"),
    (lambda: sc.conv2d(X, W, stride=1.0), TypeError, "stride must be an int or a pair"),
    (lambda: sc.conv2d(X, W, stride=(1, 2, 3)), TypeError, "stride must be an int or a pair"),
    (lambda: sc.conv2d(X, W, padding=True), TypeError, "padding must be an int or a pair"),
    (lambda: sc.conv2d(X, np.zeros((6, 4, 9, 9))), ValueError, "larger than the padded input"),
    (lambda: sc.conv2d(X, W, dilation=4), ValueError, "larger than the padded input"),
    (lambda: sc.conv2d(X.astype(complex), W), TypeError, "x must have a real numeric dtype"),
    (lambda: sc.conv2d(X.astype(object), W), TypeError, "x must have a real numeric dtype"),
    (lambda: sc.conv2d(np.array([["a"]]), W), TypeError, "x must have a real numeric dtype"),
    (lambda: sc.conv2d(X, W.astype("U1")), TypeError, "weight must have a real numeric dtype"),
    (lambda: sc.conv2d(X, W, bias=np.zeros(5)), ValueError, "bias must have shape"),
    (lambda: sc.conv2d(X, W, workspace=0), ValueError, "workspace must be a positive"),
    (lambda: sc.conv2d(X, sc.DenseWeight(np.zeros((6, 3, 3, 3)))), ValueError, "operator expects C_in=3"),
    (lambda: sc.conv2d(X, sc.DenseWeight(W), groups=2), ValueError, "groups must be 1 with a WeightOperator"),
    (lambda: sc.im2col(X, 0), ValueError, "kernel_size must be >= 1"),
    (lambda: sc.im2col(X[0], 3), ValueError, "x must be 4-D"),
    (lambda: sc.DenseWeight(np.zeros((3, 3))), ValueError, "weight must be 4-D"),
    (lambda: sc.DenseWeight(W) @ np.zeros((35, 2)), ValueError, "dimension mismatch"),
    (lambda: sc.conv_cost(W, (1, 5, 8, 8)), ValueError, "does not fit x_shape"),
    (lambda: sc.conv_cost(sc.DenseWeight(W), (1, 5, 8, 8)), ValueError, "expects C_in=4"),
    (lambda: sc.relative_error(sc.DenseWeight(W), np.zeros((6, 35))), ValueError, "shape"),
])
def test_bad_input_is_named(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_load_refuses_foreign_files(tmp_path):
    np.savez(tmp_path / "plain.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="not a saved sparseconv operator"):
        sc.load(tmp_path / "plain.npz")
    np.savez(tmp_path / "odd.npz", __class__=np.array("NoSuchWeight"), __format__=np.array(1))
    with pytest.raises(ValueError, match="unknown class 'NoSuchWeight'"):
        sc.load(tmp_path / "odd.npz")
