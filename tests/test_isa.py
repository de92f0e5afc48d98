"""The instruction-set level: detected from the CPU, lowered by SPARSECONV_ISA; every path the CPU has, tested."""

import json

import numpy as np
import pytest

import sparseconv as sc
from sparseconv import _config
from sparseconv.cli import main



def _host_level(monkeypatch):
    monkeypatch.delenv("SPARSECONV_ISA", raising=False)
    return _config.isa_level()


def test_the_override_lowers_the_level_and_never_raises_it(monkeypatch):
    host = _host_level(monkeypatch)
    for level in _config.ISA_LEVELS:
        monkeypatch.setenv("SPARSECONV_ISA", level)
        expected = min(level, host, key=_config.ISA_LEVELS.index)
        assert _config.isa_level() == expected
        # a feature of a level above the one in force is not used
        assert not (_config.has("avx512vnni") and expected != "avx512")
        assert not (_config.has("avx2") and expected == "portable")
    monkeypatch.setenv("SPARSECONV_ISA", "sse4")
    with pytest.raises(ValueError, match="SPARSECONV_ISA must be one of"):
        _config.isa_level()
    with pytest.raises(SystemExit, match="SPARSECONV_ISA must be one of"):
        main(["info"])


def test_the_level_follows_the_features(monkeypatch):
    features = _config.cpu_features()
    level = _host_level(monkeypatch)
    assert (level == "avx512") == all(f in features for f in _config.LEVEL_FEATURES["avx512"])
    assert (level != "portable") == all(f in features for f in _config.LEVEL_FEATURES["avx2"])


def _levels():
    """The levels this CPU has: the paths a test can run here."""
    features = _config.cpu_features()
    return [level for level in _config.ISA_LEVELS
            if level == "portable" or all(f in features for f in _config.LEVEL_FEATURES[level])]


@pytest.mark.parametrize("level", _levels())
def test_int8_kernel_at_every_level_the_cpu_has(level, monkeypatch, rng):
    monkeypatch.setenv("SPARSECONV_ISA", level)
    w = rng.standard_normal((9, 40, 1, 1))
    cols = rng.standard_normal((40, 37))
    op = sc.quantize(w, 8, activations=8)
    assert op.kernel == ("vnni" if level == "avx512" and "avx512vnni" in _config.cpu_features() else "portable")
    xq, s = op.quantize_columns(cols)
    exact = op.codes @ xq.astype(np.int64)  # integer-exact oracle
    assert np.array_equal(op.int_dots(op.pack_columns(cols)[0]), exact)
    assert np.array_equal(op @ cols, exact * (op.scale.astype(np.float64)[:, None] * s))


def test_info_names_the_cpu_and_every_path(capsys, monkeypatch):
    monkeypatch.setenv("SPARSECONV_ISA", "portable")
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "CPU: " in text and "ISA level: portable (forced by SPARSECONV_ISA=portable)" in text
    assert "int8 x int8 -> int32 (quantize(..., activations=8)): portable" in text
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["isa_level"] == "portable" and info["int8_kernel"] == "portable"
    assert info["methods"]["quantize: QuantizedWeight"] == "decoded"
    assert set(info["features"]) == set(sc.system.FEATURES)
