"""Solutions to the exercises of tutorial 4. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import numpy as np

import sparseconv as sc
from sparseconv.bench.harness import Contender, run
from sparseconv.study.network import load_network


def _medians(contenders):
    """{name: median seconds}, timed side by side by the bench harness (each result checked first)."""
    results = run(contenders, None, repeat=3, min_sample_s=0.01)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    return {r.name: r.median_s for r in results}


def exercise_1():
    """At the same density (half the weights kept) unstructured pruning has the smallest error: it keeps the
    largest half, which no constrained pattern can beat (2:4 keeps the largest 2 of every 4, blocks the
    largest 4x4 blocks). The structures buy regular memory access: time them on your machine (returned)."""
    W = load_network()["conv2.weight"]
    M = W.reshape(64, -1).astype(np.float64)
    ops = {"unstructured": sc.prune(W, 0.5), "2:4": sc.prune(W, structure="n:m", n=2, m=4),
           "block 4x4": sc.prune(W, 0.5, structure="block")}
    assert len({op.nnz for op in ops.values()}) == 1
    errors = {name: sc.relative_error(op, W) for name, op in ops.items()}
    # the oracle: keeping the largest half by hand gives the unstructured error
    keep = np.abs(M) >= np.sort(np.abs(M), axis=None)[M.size // 2]
    assert np.isclose(errors["unstructured"], np.linalg.norm(M * ~keep) / np.linalg.norm(M), rtol=1e-5)
    assert errors["unstructured"] < errors["2:4"] and errors["unstructured"] < errors["block 4x4"]
    cols = np.random.default_rng(0).standard_normal((576, 784)).astype(np.float32)
    times = _medians([Contender(name, lambda op=op: op @ cols, "numba", reference=op.to_dense() @ cols)
                      for name, op in ops.items()])
    return errors, times


def exercise_2():
    """The MACs follow 1/g exactly; the time follows it only while each group's GEMM is large enough to run
    at the GEMM's rate. Past that (here, a few channels per group) reading the input and writing the output
    dominate and the time flattens: the speedups are returned, measured on your machine."""
    W = load_network()["conv2.weight"]
    x = np.random.default_rng(1).standard_normal((8, 64, 14, 14)).astype(np.float32)
    dense_macs = sc.conv_cost(W, x.shape, padding=1).macs
    contenders = [Contender("dense", lambda: sc.conv2d(x, W, padding=1), "numba",
                            reference=sc.reference.conv2d(x, W, padding=1))]
    for g in (2, 4, 8, 16, 32, 64):
        op = sc.block_diagonal(W, g)
        assert sc.conv_cost(op, x.shape, padding=1).macs == dense_macs / g
        contenders.append(Contender(f"groups={g}", lambda op=op: sc.conv2d(x, op, padding=1), "numba",
                                    reference=sc.reference.conv2d(x, op.weight, padding=1, groups=g)))
    times = _medians(contenders)
    return {g: times["dense"] / times[f"groups={g}"] for g in (2, 4, 8, 16, 32, 64)}


def exercise_3():
    """Exactly one path joins every input to every output: the shuffle sends one channel of each of the 4
    first groups to each second group, so each output reaches 4 groups x 16 channels = all 64, once each."""
    W = load_network()["conv2.weight"]
    g = 4
    shuffled = sc.ProductWeight([sc.block_diagonal(np.ones((64, 64, 1, 1)), 16),
                                 sc.channel_shuffle_permutation(64, g), sc.block_diagonal(W, g)])
    # by hand: 0/1 connection matrices (output x input) of the three factors, multiplied
    first = np.kron(np.eye(g), np.ones((16, 16)))            # groups of 16
    shuffle = np.zeros((64, 64))
    for c in range(64):                                      # channel shuffle: (g, 64/g) transposed
        shuffle[(c % 16) * g + c // 16, c] = 1
    second = np.kron(np.eye(16), np.ones((4, 4)))            # groups of 4
    by_hand = second @ shuffle @ first
    assert np.array_equal(sc.paths(shuffled), by_hand)
    assert np.all(by_hand == 1)
    return int(by_hand.max())
