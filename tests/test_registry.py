"""The family registry: a family declared in one place (here, this test module) reaches compare, from_conv, the CLI."""

import json

import numpy as np
import pytest

import sparseconv as sc
from sparseconv.cost import dense_cost

BUILT_IN = ("binary", "quantize", "kmeans", "low_rank", "spatial_low_rank", "reduce_channels", "prune",
            "block_diagonal", "igcv1", "igcv2", "igcv3")


class HalfWeight(sc.WeightOperator):
    """A toy family: the weight stored in float16, multiplied in the columns' precision."""

    torch_module = f"{__name__}:HalfConv2d"

    def __init__(self, weight16, dtype=np.float32):
        self.weight16 = np.ascontiguousarray(weight16, np.float16)
        super().__init__(self.weight16.shape, dtype)

    def _matmat(self, cols):
        return self.weight16.reshape(self.shape).astype(cols.dtype) @ cols

    def _rmatmat(self, y):
        return self.weight16.reshape(self.shape).astype(y.dtype).T @ y

    def to_dense(self):
        return self.weight16.reshape(self.shape).astype(self.dtype)

    @property
    def num_params(self):
        return int(self.weight16.size)

    @property
    def nbytes(self):
        return int(self.weight16.nbytes)

    def cost(self, n_cols):
        return dense_cost(self.shape[0], self.shape[1], self.shape[1], n_cols, 2)

    def _state(self):
        return {"weight16": self.weight16}

    @classmethod
    def _from_state(cls, state, kernel_shape):
        return cls(state["weight16"])


def half(weight):
    return HalfWeight(np.asarray(weight), np.asarray(weight).dtype)


def _torch_module_class():
    torch = pytest.importorskip("torch")
    from sparseconv.torch.functional import conv2d
    from sparseconv.torch.modules import with_bias

    class HalfConv2d(torch.nn.Module):
        def __init__(self, op, stride, padding, dilation):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.from_numpy(op.to_weight()))
            self.geometry = (stride, padding, dilation)

        @classmethod
        def from_operator(cls, op, stride=1, padding=0, dilation=1, bias=None):
            return with_bias(cls(op, stride, padding, dilation), bias)

        def forward(self, x):
            return conv2d(x, self.weight.half().to(x.dtype), None, *self.geometry)

        def to_operator(self):
            return half(self.weight.detach().numpy())

    return HalfConv2d


def __getattr__(name):  # HalfConv2d is made on first use, so this module imports without torch
    if name == "HalfConv2d":
        return _torch_module_class()
    raise AttributeError(name)


@pytest.fixture
def toy_family():
    fam = sc.registry.register(sc.registry.Family("half", half, (HalfWeight,),
                                                  lambda kernel_shape, quick: [("float16", {})],
                                                  "the weight stored in float16"))
    yield fam
    sc.registry.unregister("half")


def test_built_in_families_in_order():
    assert sc.registry.names() == BUILT_IN
    for fam in sc.registry.families():
        assert fam.operators and all(issubclass(c, (sc.WeightOperator, sc.NonlinearWeight)) for c in fam.operators)
        assert fam.points((16, 16, 3, 3), quick=True), f"{fam.name} sweeps nothing on a 16->16 3x3 layer"


def test_the_toy_family_reaches_compare(toy_family, rng):
    from sparseconv.study import compare as cmp

    assert "half" in cmp.FAMILIES
    w = rng.standard_normal((8, 8, 3, 3)).astype(np.float32)
    assert ("half", "float16", {}) in cmp.sweep(w.shape, quick=True)
    (rec,) = cmp.compare(w, quick=True, families=["half"], progress=False, repeat=1)
    assert rec["family"] == "half" and rec["bytes"] == w.size * 2
    assert rec["storage_reduction"] == pytest.approx(2.0)
    assert 0 < rec["output_error"] < 1e-3


def test_the_toy_family_reaches_from_conv_and_compress(toy_family, rng):
    torch = pytest.importorskip("torch")
    import sparseconv.torch as st

    conv = torch.nn.Conv2d(6, 4, 3, stride=2, padding=1)
    assert "half" in st.convert.METHODS
    m = st.from_conv(conv, "half")
    assert type(m.inner).__name__ == "HalfConv2d"  # the conv's bias wraps it
    x = torch.from_numpy(rng.standard_normal((2, 6, 9, 9)).astype(np.float32))
    with torch.no_grad():
        assert torch.allclose(m(x), conv(x), atol=2e-3)
    y = st.functional.operator_conv2d(x, half(conv.weight.detach().numpy()), stride=2, padding=1)
    assert torch.allclose(y + conv.bias.detach().view(1, -1, 1, 1), conv(x), atol=2e-3)
    model = torch.nn.Sequential(torch.nn.Conv2d(6, 6, 3, padding=1))
    (row,) = st.compress(model, "half")
    assert row["replaced"] and type(model[0].inner).__name__ == "HalfConv2d"


def test_the_toy_family_reaches_the_cli(toy_family, tmp_path, rng, capsys):
    from sparseconv.cli import main

    assert "half" in _compare_help(capsys)
    np.save(tmp_path / "w.npy", rng.standard_normal((8, 8, 3, 3)).astype(np.float32))
    assert main(["compare", "--weights", str(tmp_path / "w.npy"), "--families", "half", "--quick",
                 "--out", str(tmp_path / "out")]) == 0
    records = json.loads((tmp_path / "out" / "compare.json").read_text())
    records = records["records"] if isinstance(records, dict) else records
    assert [r["family"] for r in records] == ["half"]


def _compare_help(capsys):
    from sparseconv.cli import main

    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    return capsys.readouterr().out


def test_register_refuses_bad_families():
    with pytest.raises(TypeError, match="Family"):
        sc.registry.register({"name": "x"})
    with pytest.raises(ValueError, match="already registered"):
        sc.registry.register(sc.registry.Family("prune", sc.prune, (sc.SparseWeight,)))
    with pytest.raises(ValueError, match="identifier"):
        sc.registry.register(sc.registry.Family("two words", sc.prune, (sc.SparseWeight,)))
    with pytest.raises(ValueError, match="unknown family 'nope'"):
        sc.registry.family("nope")
    assert sc.registry.names() == BUILT_IN
