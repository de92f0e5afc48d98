"""Solutions to the exercises of tutorial 2. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import numpy as np

import sparseconv as sc
from sparseconv.study.network import load_network


def _layer():
    return load_network()["conv2.weight"]  # the trained (64, 64, 3, 3) layer of the tutorial


def exercise_1():
    """Per-channel alpha is the least-squares scale of each row, so it beats one alpha for the tensor, which
    beats no scale at all (alpha = 1 on weights of size ~0.05 is a 13x error)."""
    W = _layer()
    errors = {scale: sc.relative_error(sc.binarize(W, scale=scale), W) for scale in ("channel", "tensor", None)}
    assert errors["channel"] <= errors["tensor"] < 1 < errors[None]
    # alpha = mean |w| of a row is the minimiser of ||w - alpha sign(w)||: moving it either way costs more
    rows = W.reshape(64, -1)
    alpha = np.abs(rows).mean(axis=1, keepdims=True)
    best = np.linalg.norm(rows - alpha * np.sign(rows))
    for f in (0.98, 1.02):
        assert np.linalg.norm(rows - f * alpha * np.sign(rows)) > best
    return errors


def exercise_2():
    """The output error first exceeds 5% at 5 bits: it roughly doubles with every bit removed (a step twice
    as large), 1% at 8 bits, 4% at 6, 8% at 5."""
    W = _layer()
    x = np.random.default_rng(0).standard_normal((4, 64, 14, 14)).astype(np.float32)
    exact = sc.reference.conv2d(x, W, padding=1)
    first = None
    for bits in range(8, 1, -1):
        q = sc.quantize(W, bits)
        y = sc.conv2d(x, q, padding=1)
        # the quantized operator's conv equals the plain-loop conv of its decoded weight
        assert np.allclose(y, sc.reference.conv2d(x, q.to_weight(), padding=1), atol=1e-4)
        error = np.linalg.norm(y - exact) / np.linalg.norm(exact)
        if first is None and error > 0.05:
            first = bits
    assert first == 5
    return first


def exercise_3():
    """After k-means converges, the two initialisations end within 1% of each other on this layer. Deep
    Compression's point is about where k-means *starts*: a density-based start (centroids at the weights'
    quantiles) puts almost no centroid in the tails, where the few large, important weights are, and k-means
    seldom moves one there; linear spacing over [min, max] starts with centroids out there."""
    W = _layer()
    flat = W.reshape(-1).astype(np.float64)
    large = np.abs(flat) >= np.quantile(np.abs(flat), 0.99)
    ends = {init: sc.relative_error(sc.kmeans_quantize(W, n_clusters=4, per_channel=False, init=init), W)
            for init in ("linear", "kmeans++")}
    assert abs(ends["linear"] - ends["kmeans++"]) < 0.01 * ends["linear"]

    def large_weight_error(centroids):  # error on the largest 1% after assigning each weight to its nearest
        nearest = centroids[np.abs(flat[:, None] - centroids[None, :]).argmin(axis=1)]
        return np.abs(nearest - flat)[large].mean()

    linear = np.linspace(flat.min(), flat.max(), 4)
    density = np.quantile(flat, (np.arange(4) + 0.5) / 4)
    assert large_weight_error(linear) < large_weight_error(density)
    return ends
