"""Solutions to the exercises of tutorial 5. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import numpy as np

import sparseconv as sc
from sparseconv import theory
from sparseconv.bench.harness import Contender, run


def _connections(groups, c):
    """0/1 (output x input) channel connections of a group conv with ``groups`` groups on ``c`` channels."""
    size = c // groups
    return np.kron(np.eye(groups), np.ones((size, size)))


def exercise_1():
    """A random permutation is almost never complementary: some secondary group then takes two channels from
    the same primary partition and none from another, so the pairs through the missing one have 0 paths
    (here all 20 seeded random permutations leave pairs unjoined). Only a permutation that sends one channel
    of every primary partition to every secondary group is strictly complementary."""
    op = sc.IGCV1.random(L=4, M=4, seed=0)
    rng = np.random.default_rng(5)
    kinds = []
    for _ in range(20):
        perm = rng.permutation(16)
        prod = sc.ProductWeight([op.secondary, sc.Permutation(perm), op.primary])
        P = np.zeros((16, 16))
        P[np.arange(16), perm] = 1          # (P x)[i] = x[perm[i]]
        by_hand = _connections(4, 16) @ P @ _connections(4, 16)
        assert np.array_equal(sc.paths(prod), by_hand)
        kind = "strict" if np.all(by_hand == 1) else (True if np.all(by_hand > 0) else None)
        assert sc.complementary(prod) == kind
        kinds.append(kind)
    assert kinds.count(None) == len(kinds)
    return {str(k): kinds.count(k) for k in set(kinds)}


def exercise_2():
    """At the budget of a 64-channel 3x3 conv (36,864 parameters) the widest IGCV1 is G = 330 (L = 55, M = 6):
    for a width G = L M the parameters G (M S + L) are smallest where M S is close to L, so the best
    designs have many small primary groups (here M S = 54 ~ L = 55)."""
    C, S = 64, 9
    budget = C * C * S
    best = (0, 0, 0)
    for L in range(1, 4 * C):
        for M in range(1, 4 * C):
            params = L * M * M * S + M * L * L     # L blocks of M x M x S, M blocks of L x L
            if params <= budget and L * M > best[0]:
                best = (L * M, L, M)
    G, L, M = theory.igcv1_max_width(budget, S)
    assert G == best[0] == 330 and G * (M * S + L) <= budget
    assert abs(M * S - L) <= 1
    return G, L, M


def exercise_3():
    """The realised fraction (speedup / MAC reduction, returned; it depends on the machine) falls as L grows:
    the MAC cut grows but the work is split into ever smaller products. On this project's Xeon (2 cores,
    N = 4, 28 x 28; medians from the bench harness) it was 0.65, 0.59, 0.42, 0.34 for L = 2, 4, 8, 16. The
    outputs are checked against the multiplied-out weight's plain-loop conv."""
    x = np.random.default_rng(2).standard_normal((4, 64, 28, 28)).astype(np.float32)
    dense = np.random.default_rng(3).standard_normal((64, 64, 3, 3)).astype(np.float32)
    contenders = [Contender("dense", lambda: sc.conv2d(x, dense, padding=1), "numba",
                            reference=sc.reference.conv2d(x, dense, padding=1))]
    reductions = {}
    for L in (2, 4, 8, 16):
        op = sc.IGCV1.random(L=L, M=64 // L, seed=L)
        reductions[L] = sc.conv_cost(dense, x.shape, padding=1).macs / sc.conv_cost(op, x.shape, padding=1).macs
        contenders.append(Contender(f"L={L}", lambda op=op: sc.conv2d(x, op, padding=1), "numba",
                                    reference=sc.reference.conv2d(x, op.to_weight(), padding=1)))
    results = run(contenders, None, repeat=3, min_sample_s=0.01)
    assert all(r.ok for r in results), [r.error for r in results if not r.ok]
    times = {r.name: r.median_s for r in results}
    return {(L, 64 // L): times["dense"] / times[f"L={L}"] / reductions[L] for L in reductions}
