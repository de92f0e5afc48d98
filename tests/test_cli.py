"""The command line: --help everywhere, and the conv benchmark end to end on one small layer."""

import json
import subprocess
import sys

import pytest

import sparseconv
from sparseconv.cli import build_parser, main

SUBCOMMANDS = [[], ["compare"], ["study"], ["figures"], ["info"], ["train-default"], ["bench"], ["bench", "conv"],
               ["bench", "sparse"], ["bench", "igc"], ["bench", "lowp"],
               ["bench", "torch"]]


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=lambda a: " ".join(a) or "top")
def test_help(args, capsys):
    with pytest.raises(SystemExit) as exc:
        main(args + ["--help"])
    assert exc.value.code == 0
    assert "usage: sparseconv" in capsys.readouterr().out


def test_every_subcommand_is_in_the_help_test():
    """A new subcommand must be added to SUBCOMMANDS (so its --help is tested)."""
    parser = build_parser()
    found = []

    def walk(p, prefix):
        found.append(prefix)
        for action in p._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                for name, sub in action.choices.items():
                    walk(sub, prefix + [name])

    walk(parser, [])
    assert sorted(found) == sorted(SUBCOMMANDS)


def test_python_dash_m():
    out = subprocess.run([sys.executable, "-m", "sparseconv", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "bench" in out.stdout


def test_unknown_layer_is_refused(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "conv", "--layers", "3ch 5x5 7x7"])
    assert "unknown layer" in str(exc.value)


@pytest.mark.slow
def test_bench_conv_runs(tmp_path, capsys):
    path = tmp_path / "bench.json"
    assert main(["bench", "conv", "--quick", "--layers", "256ch 14x14 1x1", "--repeat", "2",
                 "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "256ch 14x14 1x1" in out and "ratio" in out
    data = json.loads(path.read_text())
    (rec,) = data["records"]
    assert rec["N"] == 1 and rec["flops"] == 2 * 256 * 256 * 14 * 14
    names = ["sparseconv", "two runtimes", "gemm"] + (["onnxruntime"] if _has("onnxruntime") else [])
    for name in names:
        c = rec["contenders"][name]
        assert c["ok"], (name, c["error"])
        assert len(c["times_s"]) == 2 and all(t > 0 for t in c["times_s"])
    assert data["environment"]["numba_threads"] >= 1
    assert data["environment"]["gemm_backend"] in ("mkl", "openblas")


def _has(module):
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_network_layers_are_every_conv_of_the_network():
    torch = pytest.importorskip("torch")
    from sparseconv.bench.network import network_layers
    from sparseconv.torch import models

    for name in ("mobilenet_v2", "resnet18"):
        layers = network_layers(name)
        convs = [m for m in getattr(models, name)().modules() if isinstance(m, torch.nn.Conv2d)]
        assert sum(layer["count"] for layer in layers) == len(convs)
        assert len({tuple(sorted(layer.items())) for layer in layers}) == len(layers)  # each geometry once
    mb2 = network_layers("mobilenet_v2")
    assert {"C_in": 3, "C_out": 32, "k": 3, "stride": 2, "padding": 1, "dilation": 1, "groups": 1, "H": 224,
            "W": 224, "count": 1} in mb2
    assert any(layer["groups"] == layer["C_in"] == layer["C_out"] > 1 for layer in mb2)  # depthwise layers
    small = network_layers("small")
    assert len(small) == 5 and {"C_in": 96, "C_out": 24, "k": 3, "stride": 1, "padding": 1, "dilation": 1,
                                "groups": 1, "H": 6, "W": 12, "count": 1} in small
    with pytest.raises(ValueError, match="name must be one of"):
        network_layers("vgg16")


def test_bench_conv_network_totals(monkeypatch, tmp_path, capsys):
    """The network mode on two small layers: every contender checked against torch, totals count-weighted."""
    pytest.importorskip("torch")
    from sparseconv.bench import network

    layers = [{"C_in": 8, "C_out": 8, "k": 3, "stride": 2, "padding": 1, "dilation": 1, "groups": 8, "H": 12,
               "W": 12, "count": 3},
              {"C_in": 8, "C_out": 16, "k": 1, "stride": 1, "padding": 0, "dilation": 1, "groups": 1, "H": 6,
               "W": 6, "count": 2}]
    monkeypatch.setattr(network, "network_layers", lambda name: layers)
    path = tmp_path / "net.json"
    assert main(["bench", "conv", "--network", "resnet18", "--quick", "--repeat", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "8->8 3x3/2 dw 12x12" in out and "total conv time at N=1" in out
    data = json.loads(path.read_text())
    assert [r["count"] for r in data["records"]] == [3, 2]
    for rec in data["records"]:
        for name, c in rec["contenders"].items():
            assert c["ok"], (name, c["error"])
    _, _, totals = network.network_table(data)
    expected = sum(r["count"] * r["contenders"]["sparseconv"]["median_s"] for r in data["records"])
    assert totals[1]["sparseconv"] == pytest.approx(expected)


@pytest.mark.slow
def test_bench_sparse_runs(tmp_path, capsys):
    path = tmp_path / "sparse.json"
    assert main(["bench", "sparse", "--quick", "--parts", "csr", "--repeat", "1", "--json", str(path)]) == 0
    out = capsys.readouterr().out
    assert "x scipy" in out
    records = json.loads(path.read_text())["csr"]
    assert {r["case"] for r in records} >= {"unstructured", "n:m", "block 4x4", "kernel", "channel"}
    for r in records:
        assert r["sparseconv_s"] > 0 and r["scipy_s"] > 0 and r["dense_s"] > 0


@pytest.mark.slow
def test_bench_igc_runs(tmp_path, capsys):
    path = tmp_path / "igc.json"
    assert main(["bench", "igc", "--quick", "--repeat", "1", "--json", str(path)]) == 0
    assert "torch / sparseconv" in capsys.readouterr().out
    records = json.loads(path.read_text())["records"]
    assert {(r["layer"], r["L"]) for r in records} == {(name, L) for name in ("64ch 56x56 3x3", "256ch 14x14 3x3")
                                                        for L in (2, 8)}
    for r in records:
        assert r["sparseconv"] > 0 and r["mac_reduction"] > 1


@pytest.mark.slow
def test_bench_lowp_runs(tmp_path, capsys):
    path = tmp_path / "lowp.json"
    assert main(["bench", "lowp", "--quick", "--repeat", "1", "--json", str(path)]) == 0
    assert "x numpy GEMM" in capsys.readouterr().out
    records = json.loads(path.read_text())["records"]
    assert [r["n"] for r in records] == [196]
    assert records[0]["failed"] == {}  # every contender matched its exact or float64 reference
    names = set(records[0]["median_s"])
    assert {"binary weights, float act. (decoded, default)", "binary weights, float act. (add-only)",
            "codebook k=16 (accumulate)", "dense conv2d (3x3, float32)", "binary act. conv2d (packed-taps, default)",
            "binary act. conv2d (im2col)"} <= names
    info = sparseconv.system.info()  # each kernel contender names the path it ran
    assert f"XNOR-popcount (kernel, {info['xnor_popcount']})" in names
    assert f"int8 GEMM (kernel, {info['int8_kernel']})" in names


@pytest.mark.slow
def test_bench_torch_runs(tmp_path, capsys):
    pytest.importorskip("torch")
    path = tmp_path / "torch.json"
    assert main(["bench", "torch", "--quick", "--repeat", "1", "--devices", "cpu", "--json", str(path)]) == 0
    assert "speedup vs dense" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert {r["module"] for r in data["records"]} >= {"dense", "IGCV1 L=2", "IGCV1 L=8"}
    assert all(r["median_s"] > 0 and r["mac_reduction"] >= 1 for r in data["records"])
    assert data["wrong"] == []


@pytest.mark.slow
def test_bench_torch_reports_a_wrong_variant_and_times_the_rest(tmp_path, capsys, monkeypatch):
    torch = pytest.importorskip("torch")
    from sparseconv.bench import torchpath

    variants = torchpath._variants

    def with_a_wrong_one(label, *args):  # the identity is no 3x3 conv: it must be caught, not timed
        extra = [("identity", torch.nn.Identity(), "nchw")] if label == "dense" else []
        return variants(label, *args) + extra

    monkeypatch.setattr(torchpath, "_variants", with_a_wrong_one)
    path = tmp_path / "torch.json"
    assert main(["bench", "torch", "--quick", "--repeat", "1", "--devices", "cpu", "--json", str(path)]) == 1
    assert "WRONG, not timed: dense identity on cpu" in capsys.readouterr().out
    data = json.loads(path.read_text())
    assert [(w["module"], w["variant"]) for w in data["wrong"]] == [("dense", "identity")]
    assert data["wrong"][0]["relative_error"] > 0.1
    assert "identity" not in {r["variant"] for r in data["records"]} and len(data["records"]) > 5


def test_stream_triad_and_the_depthwise_bandwidth_column():
    from sparseconv.bench import sparse

    assert sparseconv.system.stream_triad(1 << 16, repeat=2) > 0
    with pytest.raises(ValueError, match="n must be a positive int"):
        sparseconv.system.stream_triad(0)
    record = {"layer": "64ch 56x56 3x3", "N": 1, "groups": 64, "depthwise": True, "sparseconv": 1e-3,
              "sparseconv dense": 2e-3, "realised": 0.03, "torch": 2e-3, "torch dense": 2e-3, "torch_realised": 0.02,
              "depthwise_gbs": 12.5, "torch_depthwise_gbs": 6.25}
    headers, rows = sparse.groups_table([record, dict(record, groups=2, depthwise=False)])
    assert headers[-2:] == ["dw GB/s", "torch dw GB/s"]
    assert rows[0][-2:] == ["12.5", "6.2"] and rows[1][-2:] == ["", ""]
