"""Solutions to the exercises of tutorial 6. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import numpy as np

import sparseconv as sc
from sparseconv import theory
from sparseconv.study.network import load_network


def _factorizations(n, smallest=2):
    """Every way to write n as a non-decreasing product of integers >= 2."""
    if n == 1:
        yield ()
    for k in range(smallest, n + 1):
        if n % k == 0:
            for rest in _factorizations(n // k, k):
                yield (k,) + rest


def exercise_1():
    """For C = 96 = 2^5 3 the best design is K = 2x3x4x4 (2,112 parameters with S = 9): as balanced as the
    factors of 96 allow (the real-valued optimum would be four factors of 96^(1/4) ~ 3.1)."""
    C, S = 96, 9
    by_hand = min(_factorizations(C), key=lambda ks: (C * S + C * sum(ks), -len(ks)))
    sizes, params = theory.igcv2_optimal_factors(C, S)
    assert params == C * S + C * sum(by_hand) == C * S + C * sum(sizes) == 2112
    assert sorted(sizes) == [2, 3, 4, 4]
    assert sc.complementary(sc.IGCV2.random(C, sizes, seed=0)) == "strict"
    return sizes, params


def exercise_2():
    """(4, 4, 4) has fewer parameters (1,344 against 1,600: C S + C sum K) but a slightly higher error
    (0.91 against 0.89 after 5 sweeps): error per parameter is lower for (4, 4, 4) here, and both are
    poor fits of this layer: 64 x 576 numbers cannot be kept in 1,600."""
    W = load_network()["conv2.weight"]
    fits = {sizes: sc.igcv2(W, sizes, max_iter=5) for sizes in ((4, 4, 4), (8, 8))}
    for sizes, fit in fits.items():
        assert fit.num_params == 64 * 9 + 64 * sum(sizes)
        assert np.isclose(fit.history[-1], sc.relative_error(fit, W), rtol=1e-4)
    e444, e88 = (fits[k].history[-1] for k in ((4, 4, 4), (8, 8)))
    assert e88 < e444 < 1
    assert e444 * fits[(4, 4, 4)].num_params < e88 * fits[(8, 8)].num_params
    return {k: (f.num_params, f.history[-1]) for k, f in fits.items()}


def exercise_3():
    """Each 1x1 group conv with K channels per group does K multiply-adds per value it reads and writes:
    about K/4 FLOP per byte in float32, far below the ~10-50 FLOP/byte a CPU needs to be compute-bound, so
    each factor runs at memory speed and the time is the number of passes over the activations, not the
    MACs. A dense 3x3 conv on 64 channels does ~30x more work per byte."""
    shape = (1, 64, 56, 56)
    factor = sc.block_diagonal(np.ones((64, 64, 1, 1), np.float32), 16)   # K = 4 channels per group
    dense = np.ones((64, 64, 3, 3), np.float32)
    c_factor, c_dense = sc.conv_cost(factor, shape), sc.conv_cost(dense, shape, padding=1)
    # by hand: 2 K FLOP per output value; the bytes are the input and output (4 bytes each) and the weights
    pixels = 56 * 56
    by_hand = 2 * 4 * 64 * pixels / (4 * 64 * pixels * 2 + 4 * 64 * 4)
    intensity = c_factor.flops / c_factor.bytes_moved
    assert np.isclose(intensity, by_hand, rtol=0.05)
    assert c_dense.flops / c_dense.bytes_moved > 20 * intensity
    return intensity, c_dense.flops / c_dense.bytes_moved
