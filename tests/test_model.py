"""compare on a whole network: ONNX (ONNX Runtime) and torch (hooks), captured inputs, network scores, bad input."""

import math

import numpy as np
import pytest

import sparseconv as sc
from sparseconv.cli import main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
torch = pytest.importorskip("torch")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sparseconv.study.model import _Onnx, _Torch, compare_model, conv_layers, replace_weight  # noqa: E402

FAMILIES = ["quantize", "low_rank", "prune"]


def _net():
    """A seeded small CNN: a strided stem (3 -> 8), a depthwise conv, a 1x1 (8 -> 16), a dilated 3x3, 10 classes."""
    torch.manual_seed(0)
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(),
        nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.ReLU(),
        nn.Conv2d(8, 16, 1, bias=False), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=2, dilation=2), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10)).eval()


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(7).standard_normal((6, 3, 16, 16)).astype(np.float32)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory, images):
    path = tmp_path_factory.mktemp("model") / "net.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation note
        torch.onnx.export(_net(), torch.from_numpy(images[:1]), str(path), dynamo=False, input_names=["images"],
                          output_names=["logits"], dynamic_axes={"images": {0: "N"}})
    return path


def _torch_inputs(model, images):
    """Each conv's input, captured with plain forward pre-hooks (the oracle for ONNX Runtime's capture)."""
    seen, handles = {}, []
    for name, m in model.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            handles.append(m.register_forward_pre_hook(lambda m, a, name=name: seen.__setitem__(name, a[0].numpy())))
    with torch.no_grad():
        model(torch.from_numpy(images))
    for h in handles:
        h.remove()
    return list(seen.values())


def test_onnx_capture_equals_torch_hooks(onnx_path, images):
    net = _Onnx(onnx_path)
    layers = net.layers()
    assert [layer.groups for layer in layers] == [1, 8, 1, 1]
    capture = net.capture(layers, images)
    for layer, expected in zip(layers, _torch_inputs(_net(), images), strict=True):
        np.testing.assert_allclose(capture(layer), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_own_weight_leaves_the_network_unchanged(backend, onnx_path, images):
    net = _Onnx(onnx_path) if backend == "onnx" else _Torch(_net())
    base = net.outputs(images)
    for layer in net.layers():
        full = sc.BlockDiagonalWeight(layer.weight, layer.groups).to_weight() if layer.groups > 1 else layer.weight
        score = net.scorer(layer, images)
        if backend == "onnx":  # the written graph: the same weight in the same node runs the same sums
            written = replace_weight(net.model, layer.name, full)
            y = ort.InferenceSession(written.SerializeToString(), providers=["CPUExecutionProvider"]).run(
                None, {"images": images})[0]
        else:
            y = score(full)
        if layer.groups == 1:
            assert np.array_equal(y, base), layer.name  # error 0
        else:  # an ungrouped conv with zero blocks: the same sums in another order
            np.testing.assert_allclose(y, base, rtol=1e-5, atol=1e-6)
        # the session compare scores with (the weight an input of the graph) agrees to rounding
        np.testing.assert_allclose(score(full), base, rtol=1e-5, atol=1e-6)
        assert not np.allclose(score(np.zeros_like(full)), base)  # and another weight changes it


def test_the_written_graph_loads_and_runs(onnx_path, images, tmp_path):
    layer = conv_layers(onnx_path)[2]  # the 1x1 conv
    w = sc.low_rank(layer.weight, 4).to_weight()
    model = replace_weight(onnx.load(str(onnx_path)), layer.name, w)
    onnx.checker.check_model(model)
    (tmp_path / "replaced.onnx").write_bytes(model.SerializeToString())
    session = ort.InferenceSession(str(tmp_path / "replaced.onnx"), providers=["CPUExecutionProvider"])
    y = session.run(None, {"images": images})[0]
    # the oracle: torch with that weight put in the module
    torch_net = _net()
    with torch.no_grad():
        torch_net[4].weight.copy_(torch.from_numpy(w))
        expected = torch_net(torch.from_numpy(images)).numpy()
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_Onnx(onnx_path).scorer(layer, images)(w), y, rtol=1e-5, atol=1e-6)


def test_onnx_and_torch_agree(onnx_path, images):
    got = {}
    for key, model in (("onnx", onnx_path), ("torch", _net())):
        result = compare_model(model, images, quick=True, families=FAMILIES, progress=False, repeat=1)
        assert result["class_scores"] and result["output_shape"] == [6, 10]
        assert len(result["layers"]) == 4 and not any("skipped" in row for row in result["layers"])
        for r in result["records"]:
            if "skipped" in r:
                assert r["skipped"]
                continue
            assert math.isfinite(r["network_error"]) and 0 <= r["top1_agreement"] <= 1
            assert all(math.isfinite(v) for v in r.values() if isinstance(v, float))
        got[key] = [(r["family"], r["label"], r.get("network_error")) for r in result["records"]]
    assert [g[:2] for g in got["onnx"]] == [g[:2] for g in got["torch"]]
    for (_, _, a), (_, _, b) in zip(got["onnx"], got["torch"]):
        assert (a is None) == (b is None)
        if a is not None:
            assert a == pytest.approx(b, rel=1e-3, abs=1e-5)


def test_a_point_that_also_quantizes_inputs_says_why_it_has_no_network_score(onnx_path, images):
    result = compare_model(onnx_path, images, layers="*", quick=True, families=["binary"], progress=False, repeat=1)
    binary = [r for r in result["records"] if "skipped" not in r and r["label"] == "binary activations"]
    assert binary and all("network_error" not in r and "quantizes its inputs" in r["network_note"] for r in binary)


def _model(nodes, initializers, inputs=("x",), shape=(None, 4, 9, 9)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info(i, TensorProto.FLOAT, list(shape)) for i in inputs],
        [helper.make_tensor_value_info(nodes[-1].output[0], TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in initializers.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)


@pytest.mark.parametrize("attrs", [dict(pads=[0, 0, 1, 1], strides=[2, 2]), dict(auto_pad="SAME_UPPER"),
                                   dict(auto_pad="SAME_LOWER", strides=[2, 2]), dict(auto_pad="VALID")])
def test_onnx_padding_is_what_onnx_runtime_does(attrs):
    rng = np.random.default_rng(3)
    w = rng.standard_normal((5, 4, 2, 3)).astype(np.float32)
    model = _model([helper.make_node("Conv", ["x", "w"], ["y"], name="c", **attrs)], {"w": w})
    x = rng.standard_normal((2, 4, 9, 9)).astype(np.float32)
    expected = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
        None, {"x": x})[0]
    layer = conv_layers(model)[0]
    t, l, b, r = layer.explicit_pads(x.shape[2:])
    got = sc.conv2d(np.pad(x, ((0, 0), (0, 0), (t, b), (l, r))), w, stride=layer.stride)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)
    result = compare_model(model, x, quick=True, families=["quantize"], progress=False, repeat=1)
    eight = [r for r in result["records"] if r["label"] == "8 bits"][0]
    assert eight["output_error"] < 0.02 and eight["network_error"] == pytest.approx(eight["output_error"], rel=1e-3)
    assert not result["class_scores"] and "top1_agreement" not in eight


def test_torch_same_padding_of_an_even_kernel():
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Conv2d(4, 5, (4, 3), padding="same", dilation=(1, 2), bias=False)).eval()
    x = np.random.default_rng(1).standard_normal((2, 4, 9, 8)).astype(np.float32)
    layer = conv_layers(model)[0]
    assert layer.explicit_pads(x.shape[2:]) == (1, 2, 2, 2)  # torch puts the odd row at the end
    result = compare_model(model, x, quick=True, families=["quantize"], progress=False, repeat=1)
    eight = [r for r in result["records"] if r["label"] == "8 bits"][0]
    # the network is this one layer: its output error is the layer's, computed by sparseconv on padded inputs
    assert eight["output_error"] < 0.02 and eight["network_error"] == pytest.approx(eight["output_error"], rel=1e-3)


def test_bad_models_and_inputs_are_clear_errors(onnx_path, images):
    with pytest.raises(ValueError, match="no Conv layers"):
        compare_model(_model([helper.make_node("Relu", ["x"], ["y"])], {}), np.zeros((1, 4, 9, 9), np.float32))
    with pytest.raises(ValueError, match="near matches.*Conv"):
        compare_model(onnx_path, images, layers="/0/Conv_typo")
    with pytest.raises(ValueError, match=r"takes \(N, 3, 16, 16\)"):
        compare_model(onnx_path, images[:, :2])
    with pytest.raises(ValueError, match=r"cannot run on inputs of shape \(6, 2, 16, 16\)"):
        compare_model(_net(), images[:, :2])
    bad = images.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compare_model(onnx_path, bad)
    nan_w = np.full((2, 4, 1, 1), np.nan, np.float32)
    with pytest.raises(ValueError, match="layer c: its weight has NaN"):
        compare_model(_model([helper.make_node("Conv", ["x", "w"], ["y"], name="c")], {"w": nan_w}),
                      np.zeros((1, 4, 9, 9), np.float32))
    # a weight computed at run time: skipped in a whole network, an error when it is the only layer asked for
    computed = _model([helper.make_node("Mul", ["w0", "two"], ["w"]),
                       helper.make_node("Conv", ["x", "w"], ["y"], name="c")],
                      {"w0": np.ones((2, 4, 1, 1), np.float32), "two": np.array(2, np.float32)})
    assert "computed when the network runs" in conv_layers(computed)[0].skipped
    with pytest.raises(ValueError, match="c: its weight 'w' is computed"):
        compare_model(computed, np.zeros((1, 4, 9, 9), np.float32))
    with pytest.raises(ValueError, match="2 inputs"):
        compare_model(_model([helper.make_node("Add", ["x", "z"], ["y"])], {}, inputs=("x", "z")), images)
    with pytest.raises(TypeError, match="ONNX file or model, or a torch nn.Module"):
        compare_model([1, 2], images)
    with pytest.raises(ValueError, match="minutes"):
        compare_model(onnx_path, images, max_minutes=1e-6)


def test_missing_extra_names_it(monkeypatch, onnx_path, images):
    monkeypatch.setitem(__import__("sys").modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"sparseconv\[onnx\]"):
        compare_model(onnx_path, images)


def test_cli_whole_network_and_one_node(onnx_path, images, tmp_path, capsys):
    np.save(tmp_path / "images.npy", images)
    out = tmp_path / "out"
    args = ["compare", "--onnx", str(onnx_path), "--inputs", str(tmp_path / "images.npy"), "--quick",
            "--families", *FAMILIES]
    assert main(args + ["--out", str(out), "--max-error", "0.05"]) == 0
    text = capsys.readouterr().out
    assert "cheapest point per layer with the network's output error <= 0.05" in text
    assert "most sensitive layers" in text
    assert {p.name for p in out.iterdir()} == {"compare_model.json", "compare_model.csv", "per_layer.txt",
                                               "network_error.png"}
    node = conv_layers(onnx_path)[1].name
    assert main(["compare", "--onnx", f"{onnx_path}:{node}", "--inputs", str(tmp_path / "images.npy"), "--quick",
                 "--families", "prune"]) == 0
    text = capsys.readouterr().out
    assert "1 studied" in text and node in text


@pytest.mark.parametrize("extra, match", [
    (["--onnx", "{model}:nope"], "no conv layer named 'nope'"),
    (["--onnx", "{model}", "--stride", "2"], "--stride: not with a whole network"),
    (["--onnx", "{tmp}/missing.onnx"], "does not exist"),
    (["--onnx", "{model}", "--max-error", "0"], "--max-error must be > 0"),
])
def test_cli_bad_whole_network_runs_write_nothing(extra, match, onnx_path, images, tmp_path):
    np.save(tmp_path / "images.npy", images)
    extra = [e.format(model=onnx_path, tmp=tmp_path) for e in extra]
    with pytest.raises(SystemExit, match=match):
        main(["compare", *extra, "--inputs", str(tmp_path / "images.npy"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()
    with pytest.raises(SystemExit, match="needs its inputs"):
        main(["compare", "--onnx", str(onnx_path)])


def test_cli_whole_torch_model(tmp_path, images, capsys):
    torch.save(_net(), tmp_path / "net.pt")
    np.save(tmp_path / "images.npy", images)
    assert main(["compare", "--torch", str(tmp_path / "net.pt"), "--inputs", str(tmp_path / "images.npy"),
                 "--quick", "--families", "quantize", "--layers", "0", "6"]) == 0
    captured = capsys.readouterr()
    assert "files you trust" in captured.err and "2 studied" in captured.out
