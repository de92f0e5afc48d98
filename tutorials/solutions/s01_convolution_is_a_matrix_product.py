"""Solutions to the exercises of tutorial 1. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import time

import numpy as np

import sparseconv as sc


def exercise_1():
    """stride=2, dilation=2: fewer columns (one every 2 pixels), and each column reads every other pixel."""
    x = np.random.default_rng(1).standard_normal((1, 4, 7, 7))
    cols = sc.im2col(x, 3, stride=2, dilation=2)
    # a dilated 3x3 kernel spans 5 pixels: (7 - 5) // 2 + 1 = 2 outputs per side, 4 columns of 36 entries
    assert cols.shape == (36, 4)
    for r in range(2):
        for q in range(2):
            patch = x[0, :, 2 * r:2 * r + 5:2, 2 * q:2 * q + 5:2]  # every other pixel of a 5x5 window
            assert np.array_equal(cols[:, 2 * r + q], patch.reshape(-1))
    return cols.shape


def exercise_2():
    """With padding 1 the adjoint identity still holds; col2im drops what lands on the padding, because the
    adjoint of "embed x in a zero border" is "crop the border"."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((1, 2, 5, 5))
    cols = sc.im2col(x, 3, padding=1)
    C = rng.standard_normal(cols.shape)
    back = sc.col2im(C, x.shape, 3, padding=1)
    assert np.isclose(np.vdot(cols, C), np.vdot(x, back))
    # by hand: scatter-add every column onto the padded image (7 x 7), then crop the border
    padded = np.zeros((1, 2, 7, 7))
    for p in range(25):
        r, q = divmod(p, 5)
        padded[0, :, r:r + 3, q:q + 3] += C[:, p].reshape(2, 3, 3)
    assert np.allclose(back, padded[:, :, 1:-1, 1:-1])
    dropped = np.abs(padded).sum() - np.abs(padded[:, :, 1:-1, 1:-1]).sum()
    assert dropped > 0  # the border received values, and col2im does not return them
    return float(dropped)


def exercise_3():
    """sc.reference.conv2d loops over the filters' taps only (kH*kW = 9 NumPy operations on whole slices),
    so it lands between the seven-loop definition and im2col + GEMM: the same answer, in seconds you can
    compare on your machine (the ratios depend on it; nothing here asserts a time)."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 4, 10, 10)).astype(np.float32)
    w = rng.standard_normal((4, 4, 3, 3)).astype(np.float32)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    loops = np.zeros((1, 4, 10, 10), np.float32)
    for o in range(4):
        for r in range(10):
            for q in range(10):
                loops[0, o, r, q] = np.sum(w[o] * xp[0, :, r:r + 3, q:q + 3])
    times = {}
    for name, fn in (("reference", lambda: sc.reference.conv2d(x, w, padding=1)),
                     ("im2col + GEMM", lambda: sc.conv2d(x, w, padding=1))):
        y = fn()
        start = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - start
        assert np.allclose(y, loops, atol=1e-4), name
    return times
