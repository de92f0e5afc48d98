"""compare on any single layer: kernel sizes, strides, dilations, paddings, groups; a skip has its reason."""

import json
import math

import numpy as np
import pytest

import sparseconv as sc
from sparseconv.study.compare import compare, scored

from conftest import torch_conv2d

# (C_out, C_in, kH, kW), geometry: 1x1 / 3x3 / 5x5 / 1x7, stride 1-2, dilation 1-2, padding 0/1/same,
# groups 1/2/depthwise, C_in != C_out, a 3-channel stem
LAYERS = [
    ((12, 8, 1, 1), dict()),
    ((8, 8, 3, 3), dict(stride=2, padding=1)),
    ((8, 8, 3, 3), dict(dilation=2, padding="same")),
    ((6, 3, 5, 5), dict(stride=2, padding=2)),
    ((8, 8, 1, 7), dict(padding=(0, 3))),
    ((8, 4, 3, 3), dict(groups=2, padding=0)),
    ((8, 1, 3, 3), dict(groups=8, stride=2, padding=1)),
    ((16, 8, 3, 3), dict(stride=(1, 2), dilation=(2, 1))),
]


@pytest.mark.slow
@pytest.mark.parametrize("shape,geom", LAYERS, ids=[f"{'x'.join(map(str, s))}-{g}" for s, g in LAYERS])
def test_compare_takes_any_layer(shape, geom):
    rng = np.random.default_rng(sum(shape))
    w = rng.standard_normal(shape).astype(np.float32)
    groups = geom.get("groups", 1)
    x = rng.standard_normal((2, shape[1] * groups, 9, 10)).astype(np.float32)
    records = compare(w, x, quick=True, progress=False, repeat=1, **geom)
    assert {r["family"] for r in records} == set(sc.registry.names())  # every family scored or skipped
    for r in records:
        if "skipped" in r:
            assert isinstance(r["skipped"], str) and r["skipped"]
        else:
            numbers = [v for v in r.values() if isinstance(v, (int, float)) and not isinstance(v, bool)]
            assert all(math.isfinite(v) for v in numbers), r
    assert scored(records)
    # the layer as compare runs it is the layer torch runs with that geometry
    kwargs = {k: v for k, v in geom.items() if k != "padding"}
    padding = geom.get("padding", tuple(d * (k - 1) // 2 for d, k in zip(_pair(geom.get("dilation", 1)), shape[2:])))
    expected = torch_conv2d(x, w, padding=padding, **kwargs)
    full = sc.BlockDiagonalWeight(w, groups).to_weight() if groups > 1 else w
    got = sc.conv2d(x, full, padding=padding, **{k: v for k, v in kwargs.items() if k != "groups"})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    eight_bit = [r for r in records if r["family"] == "quantize" and r.get("label") == "8 bits"]
    if eight_bit and "skipped" not in eight_bit[0]:  # the reference and the point run under one geometry
        assert eight_bit[0]["output_error"] < 0.02


def _pair(v):
    return (v, v) if isinstance(v, int) else v


def test_skip_reasons_name_what_is_missing(rng):
    records = compare(rng.standard_normal((12, 8, 1, 1)).astype(np.float32), quick=True, progress=False, repeat=1,
                      families=["igcv1", "spatial_low_rank", "low_rank"])
    reasons = {r["family"]: r["skipped"] for r in records if "skipped" in r}
    assert "C_in = C_out" in reasons["igcv1"] and "8 to 12" in reasons["igcv1"]
    assert "1 x 1" in reasons["spatial_low_rank"]
    assert "low_rank" not in reasons


def test_a_grouped_layer_is_compared_with_itself(rng):
    w = rng.standard_normal((8, 2, 3, 3)).astype(np.float32)  # 4 groups of 2 channels
    records = compare(w, quick=True, progress=False, repeat=1, groups=4, padding=1, families=["quantize", "prune"])
    quantized = [r for r in records if r["family"] == "quantize"]
    assert all("more than the grouped layer" in r["skipped"] for r in quantized)  # it would multiply the zeros
    pruned = scored(records)
    assert pruned and all(r["family"] == "prune" for r in pruned)
    assert all(r["mac_reduction"] >= 1 - 1e-9 for r in pruned)


def test_on_a_depthwise_layer_only_sparse_families_run(rng):
    w = rng.standard_normal((8, 1, 3, 3)).astype(np.float32)
    records = compare(w, quick=True, progress=False, repeat=1, groups=8, padding=1, families=["low_rank", "prune"])
    reasons = {r["family"]: r["skipped"] for r in records if "skipped" in r}
    assert "depthwise" in reasons["low_rank"] and "8 x 72 block-diagonal" in reasons["low_rank"]
    assert {r["family"] for r in scored(records)} == {"prune"}
    assert sc.registry.family("prune").keeps_zeros and not sc.registry.family("low_rank").keeps_zeros


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(stride=0), ValueError, "stride must be >= 1"),
    (dict(groups=3), ValueError, "does not fit"),
    (dict(groups=1.5), TypeError, "groups must be a positive int"),
    (dict(padding="full"), ValueError, "padding must be 'same', 'valid'"),
])
def test_bad_geometry_is_refused_before_any_work(rng, kwargs, error, match):
    with pytest.raises(error, match=match):
        compare(rng.standard_normal((8, 8, 3, 3)).astype(np.float32), quick=True, progress=False, **kwargs)
    with pytest.raises(ValueError, match="default layer has its own geometry"):
        compare(stride=2, quick=True, progress=False)


@pytest.mark.slow
def test_the_cli_reads_a_torch_convs_geometry(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from sparseconv.cli import main

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=2))
    torch.save(model, tmp_path / "m.pt")
    out = tmp_path / "out"
    assert main(["compare", "--torch", f"{tmp_path / 'm.pt'}:0", "--quick", "--families", "prune", "quantize",
                 "--out", str(out)]) == 0
    records = json.loads((out / "compare.json").read_text())["records"]
    assert any("more than the grouped layer" in r.get("skipped", "") for r in records)
    with pytest.raises(SystemExit, match="read from the module"):
        main(["compare", "--torch", f"{tmp_path / 'm.pt'}:0", "--stride", "1", "--quick"])
    np.save(tmp_path / "w.npy", np.ones((8, 4, 3, 3), np.float32))
    assert main(["compare", "--weights", str(tmp_path / "w.npy"), "--groups", "2", "--stride", "2", "--padding",
                 "0", "--quick", "--families", "prune"]) == 0
    assert "unstructured" in capsys.readouterr().out
