"""Solutions to the exercises of tutorial 3. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import numpy as np

import sparseconv as sc
from sparseconv.datasets import load_digits
from sparseconv.study.network import layer_input, load_network


def exercise_1():
    """Rank 28 keeps 90% of conv2's energy: the smallest r whose top-r squared singular values reach 90%."""
    W = load_network()["conv2.weight"]
    s = np.linalg.svd(W.reshape(64, -1).astype(np.float64), compute_uv=False)
    by_hand = int(np.searchsorted(np.cumsum(s ** 2) / np.sum(s ** 2), 0.9) + 1)
    op = sc.low_rank(W, energy=0.9)
    assert op.rank == by_hand == 28
    return op.rank


def exercise_2():
    """On real layer inputs (100 test digits), spatial rank 24 (9,216 parameters) has a 3-4x smaller output
    error than rank 16 (10,240): the trained kernels are nearly separable along rows and columns, more than
    the 64 x 576 matrix is low rank."""
    net = load_network()
    W = net["conv2.weight"]
    h = layer_input(net, load_digits("test")[0][:100])   # (100, 64, 14, 14)
    exact = sc.reference.conv2d(h, W, padding=1)
    errors = {}
    for name, op in (("rank 16", sc.low_rank(W, rank=16)), ("spatial rank 24", sc.spatial_low_rank(W, 24))):
        y = sc.conv2d(h, op, padding=1)
        assert np.allclose(y, sc.reference.conv2d(h, op.to_weight(), padding=1), atol=1e-3)
        errors[name] = float(np.linalg.norm(y - exact) / np.linalg.norm(exact))
    assert 3 * errors["spatial rank 24"] < errors["rank 16"]
    return errors


def exercise_3():
    """Dropping half the output and input channels leaves a matrix of rank <= 32 of a special kind (zero rows
    and columns). Eckart-Young: the truncated SVD is the best matrix of its rank, and at the same 9,216
    parameters (rank 14) it still loses less, because it may mix every channel instead of keeping some."""
    W = load_network()["conv2.weight"]
    reduced = sc.reduce_channels(W, keep_out=0.5, keep_in=0.5)
    rank = reduced.num_params // (64 + 576)            # 9216 // 640 = 14: no more parameters than reduced
    lr = sc.low_rank(W, rank=rank)
    assert lr.num_params <= reduced.num_params
    assert np.linalg.matrix_rank(reduced.to_dense()) <= 32
    assert sc.relative_error(lr, W) < sc.relative_error(reduced, W)
    return sc.relative_error(lr, W), sc.relative_error(reduced, W)
