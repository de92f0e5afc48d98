"""The instruction-set level: detected from the CPU, lowered by SPARSECONV_ISA; every path the CPU has, tested."""

import json
import os

import numba
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


def _expected_int8_path(level, weight_bits, act_bits):
    """The int8 path the rules of the kernels' docs give, for 8-bit-or-less symmetric codes at ``level``."""
    features = _config.cpu_features()
    at = _config.ISA_LEVELS.index(level)
    if at >= _config.ISA_LEVELS.index("avx512") and "avx512vnni" in features:
        return "vnni512"
    if at >= _config.ISA_LEVELS.index("avxvnni") and "avxvnni" in features:
        return "avxvnni"
    if at >= _config.ISA_LEVELS.index("avx2"):
        # vpmaddubsw adds two u8 x s8 products in a saturating int16
        return "avx2" if 2 * (2 ** act_bits - 1) * (2 ** (weight_bits - 1) - 1) <= 32767 else "avx2-int16"
    return "portable"


@pytest.mark.parametrize("level", _levels())
@pytest.mark.parametrize("weight_bits, act_bits", [(8, 8), (7, 8), (8, 7), (4, 3)])
def test_int8_kernel_at_every_level_the_cpu_has(level, weight_bits, act_bits, monkeypatch, rng):
    monkeypatch.setenv("SPARSECONV_ISA", level)
    for c_out, k, n in [(9, 40, 37), (5, 7, 3), (33, 130, 65)]:
        w = rng.standard_normal((c_out, k, 1, 1))
        cols = rng.standard_normal((k, n))
        op = sc.quantize(w, weight_bits, activations=act_bits)
        assert op.kernel == _expected_int8_path(level, weight_bits, act_bits)
        xq, s = op.quantize_columns(cols)
        exact = op.codes @ xq.astype(np.int64)  # integer-exact oracle
        assert np.array_equal(op.int_dots(op.pack_columns(cols)[0]), exact)
        assert np.array_equal(op @ cols, exact * (op.scale.astype(np.float64)[:, None] * s))


@pytest.mark.parametrize("level", _levels())
@pytest.mark.parametrize("weight_bits, act_bits", [(8, 8), (7, 8), (8, 7)])
def test_int8_paths_do_not_saturate_at_the_extremes(level, weight_bits, act_bits, monkeypatch, rng):
    """Codes at +-max times activations at +-max, over a long k: every pair sum at its largest."""
    monkeypatch.setenv("SPARSECONV_ISA", level)
    k = 2304
    w = np.ones((6, k, 1, 1))
    w[1] = -1
    w[2:] = rng.choice([-1.0, 1.0], size=(4, k, 1, 1))
    cols = np.ones((k, 50))
    cols[:, 1::3] = -1
    cols[:, 2::3] = rng.choice([-1.0, 1.0], size=(k, cols[:, 2::3].shape[1]))
    op = sc.quantize(w, weight_bits, activations=act_bits)
    assert np.abs(op.codes).max() == 2 ** (weight_bits - 1) - 1
    xq, s = op.quantize_columns(cols)
    exact = op.codes @ xq.astype(np.int64)
    assert np.abs(exact).max() == k * (2 ** (weight_bits - 1) - 1) * (2 ** (act_bits - 1) - 1)
    assert np.array_equal(op.int_dots(op.pack_columns(cols)[0]), exact)


def test_info_names_the_cpu_and_every_path(capsys, monkeypatch):
    monkeypatch.setenv("SPARSECONV_ISA", "portable")
    assert main(["info"]) == 0
    text = capsys.readouterr().out
    assert "CPU: " in text and "ISA level: portable (forced by SPARSECONV_ISA=portable)" in text
    assert "int8 x int8 -> int32 (quantize(w, 8, activations=8)): portable" in text
    assert main(["info", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["isa_level"] == "portable" and info["int8_kernel"] == info["int8_kernel_7bit"] == "portable"
    assert info["methods"]["quantize: QuantizedWeight"] == "decoded"
    assert set(info["features"]) == set(sc.system.FEATURES)


def test_the_features_are_those_numba_compiles_for(monkeypatch):
    """NUMBA_CPU_FEATURES (what numba builds for) decides the features, not the host CPU."""
    if numba.config.DISABLE_JIT:
        pytest.skip("no compiled code with the JIT off")
    monkeypatch.setattr(numba.config, "CPU_FEATURES", "+sse2,+avx2,-avx512f,+fma")
    monkeypatch.delattr(_config.cpu_features, "_host", raising=False)
    try:
        assert _config.cpu_features() == {"sse2", "avx2", "fma"}
        assert _config.isa_level() == "avx2"
    finally:
        monkeypatch.undo()
        del _config.cpu_features._host


def test_emulation_env_refuses_a_level_above_the_one_in_force(monkeypatch):
    with pytest.raises(ValueError, match="level must be one of"):
        sc.system.emulation_env("avx512")
    monkeypatch.setenv("SPARSECONV_ISA", "portable")
    if numba.config.DISABLE_JIT or _config.isa_level() != "portable":
        pytest.skip("the JIT is off")
    with pytest.raises(ValueError, match="cannot run the code of level 'avx2'"):
        sc.system.emulation_env("avx2")
    env = sc.system.emulation_env("portable")
    assert env["SPARSECONV_ISA"] == "portable" and env["NUMBA_CPU_NAME"] == "x86-64-v2"
    assert "+avx2" not in env["NUMBA_CPU_FEATURES"].split(",")


def test_bench_isa_reruns_the_command_in_an_emulating_process(monkeypatch, capsys):
    import subprocess

    calls = []
    monkeypatch.setattr(subprocess, "run", lambda args, env: calls.append((args, env)) or
                        subprocess.CompletedProcess(args, 0))
    monkeypatch.setattr(sc.system, "emulation_env", lambda level: {"SPARSECONV_ISA": level, "NUMBA_CPU_NAME": "haswell",
                                                                   "OPENBLAS_CORETYPE": "Haswell",
                                                                   "MKL_ENABLE_INSTRUCTIONS": "AVX2",
                                                                   "ATEN_CPU_CAPABILITY": "avx2"})
    assert main(["bench", "lowp", "--quick", "--isa", "avx2", "--repeat", "2"]) == 0
    (args, env), = calls
    assert args[1:] == ["-m", "sparseconv", "bench", "lowp", "--quick", "--repeat", "2"]
    assert env["SPARSECONV_ISA"] == "avx2" and env["NUMBA_CPU_NAME"] == "haswell"
    assert "emulating an avx2 CPU" in capsys.readouterr().out


_EMULATED_CHECK = """
import numpy as np, sparseconv as sc
rng = np.random.default_rng(5)
info = sc.system.info()
assert info["compiled_for"] == "haswell" and info["xnor_popcount"] == "vpshufb", info
assert not info["features"]["avx512f"] and info["isa_level"] == "avx2"
for wb, ab, path in [(8, 8, "avx2-int16"), (8, 7, "avx2")]:
    w, cols = rng.standard_normal((10, 75, 1, 1)), rng.standard_normal((75, 40))
    op = sc.quantize(w, wb, activations=ab)
    xq, s = op.quantize_columns(cols)
    assert op.kernel == path and np.array_equal(op.int_dots(op.pack_columns(cols)[0]), op.codes @ xq.astype(np.int64))
b = sc.binarize(rng.standard_normal((10, 130, 1, 1)), activations="binary", activation_scale=False)
cols = rng.standard_normal((130, 300))
exact = b.signs.astype(np.int64) @ np.where(cols < 0, -1, 1)
assert np.array_equal(b.xnor_dots(b.pack_columns(cols), 300), exact)
assert info["float_tile"] == "avx2"
igc, x = sc.IGCV1.random(4, 4, seed=1), rng.standard_normal((1, 16, 9, 30)).astype(np.float32)
y, ref = sc.conv2d(x, igc, padding=1), sc.reference.conv2d(x, igc.to_weight(), padding=1)
assert np.abs(y - ref).max() <= 1e-4 * np.abs(ref).max(), "the 256-bit register tile"
print("ok")
"""


@pytest.mark.skipif(numba.config.DISABLE_JIT or "avx2" not in _config.cpu_features(),
                    reason="needs compiled code on a CPU with AVX2")
def test_the_avx2_code_built_for_an_avx2_cpu(monkeypatch):
    """In a process that compiles for Haswell (no AVX-512 instructions at all), the AVX2 paths are exact."""
    import subprocess
    import sys

    monkeypatch.delenv("SPARSECONV_ISA", raising=False)
    env = {**os.environ, **sc.system.emulation_env("avx2")}
    done = subprocess.run([sys.executable, "-c", _EMULATED_CHECK], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]
