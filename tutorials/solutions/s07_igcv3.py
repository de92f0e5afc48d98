"""Solutions to the exercises of tutorial 7. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import itertools

import numpy as np

import sparseconv as sc
from sparseconv.study.network import load_network


def _reachable(op):
    """Boolean (output x input) reachability through the factors, from their dense patterns alone."""
    reach = None
    for factor in reversed(op.factors):                     # op.factors is in the formula's order, A_k ... A_1
        d = factor.to_dense()                                                # (C_out, C_in * kH * kW)
        c_in = factor.kernel_shape[1]
        pattern = np.abs(d).reshape(d.shape[0], c_in, -1).sum(axis=2) > 0   # channel-to-channel
        reach = pattern if reach is None else (pattern.astype(int) @ reach.astype(int)) > 0
    return reach


def exercise_1():
    """On 8 channels the block is not complementary at all where a reducing group's input channels all come
    from fewer expanding groups than there are: with G2 groups each reducing group sees E / G2 expanded
    channels, and if E / G2 < G1 some expanding group (and so some inputs) never reaches its outputs. The
    path counts then have zeros."""
    found = []
    for t, g1, g2 in itertools.product((1, 2, 4), (1, 2, 4, 8), (1, 2, 4, 8)):
        e = 8 * t
        if e % g1 or e % g2 or 8 % g1 or 8 % g2:
            continue
        op = sc.IGCV3.random(8, 8, expansion=t, groups=(g1, g2), seed=0)
        counts = sc.paths(op)
        assert np.array_equal(counts > 0, _reachable(op))       # the path counts against reachability by hand
        if sc.complementary(op) is None:
            assert (counts == 0).any() and e // g2 < g1
            found.append((t, g1, g2))
    assert found
    return found


def exercise_2():
    """Each doubling of the expansion t doubles the parameters (4,672, 9,344, 18,688) and cuts the error by
    about a third (0.64, 0.47, 0.32 after two ALS sweeps, kept short for the test suite; more sweeps lower
    all three): diminishing returns, as for low rank."""
    W = load_network()["conv2.weight"]
    fits = {t: sc.igcv3(W, expansion=t, groups=(2, 2), max_iter=2) for t in (1, 2, 4)}
    params = [fits[t].num_params for t in (1, 2, 4)]
    errors = [fits[t].history[-1] for t in (1, 2, 4)]
    assert params[1] == 2 * params[0] and params[2] == 2 * params[1]
    assert errors[0] > errors[1] > errors[2]
    for t, fit in fits.items():
        assert np.isclose(fit.history[-1], sc.relative_error(fit, W), rtol=1e-4)
    return dict(zip((1, 2, 4), zip(params, errors)))


def exercise_3():
    """Only partly. The last 1x1 conv (320 -> 1280 at 7 x 7) leads both lists, but three of the five layers
    with the most MACs are the stem and the first expanding convs at 112 x 112 with under 2,000 parameters
    each, while the others with the most parameters are late 1x1 convs at 7 x 7: a conv's MACs are its
    parameters times its output pixels, and the resolution falls 16x as the channels grow."""
    import sparseconv.torch as st

    table = st.count_cost(st.igcv3_d(), (1, 3, 224, 224))
    convs = [r for r in table.rows if r["type"] == "Conv2d"]
    by_macs = sorted(convs, key=lambda r: -r["macs"])[:5]
    by_params = sorted(convs, key=lambda r: -r["params"])[:5]
    assert by_macs[0]["name"] == by_params[0]["name"]
    small_and_wide = [r for r in by_macs if r["params"] < 2000 and r["output"][2] == 112]
    assert len(small_and_wide) == 3
    assert all(r["output"][2] == 7 for r in by_params)
    # MACs of a conv = params x output pixels (every weight is used once per output pixel)
    for r in convs:
        assert r["macs"] == r["params"] * r["output"][2] * r["output"][3]
    return [r["name"] for r in by_macs], [r["name"] for r in by_params]
