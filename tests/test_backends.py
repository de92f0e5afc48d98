"""Both GEMM backends of the kernels give torch's answer; the choice is explicit and checked."""

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

SCRIPT = r"""
import json, numpy as np, torch, sparseconv as sc
from sparseconv import _blas
rng = np.random.default_rng(3)
errs = []
for dtype in (np.float32, np.float64):
    for kwargs in (dict(padding=1), dict(stride=2, padding=1), dict(padding="same", dilation=2),
                   dict(groups=2, padding=1)):
        x = rng.standard_normal((2, 8, 13, 11)).astype(dtype)
        w = rng.standard_normal((6, 8 // kwargs.get("groups", 1), 3, 3)).astype(dtype)
        y = sc.conv2d(x, w, **kwargs)
        ref = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), **kwargs).numpy()
        errs.append(float(np.abs(y - ref).max() / np.abs(ref).max()))
print(json.dumps({"backend": _blas.backend(), "reason": _blas.reason(), "errors": errs}))
"""


def _run(backend):
    env = dict(os.environ, SPARSECONV_BLAS=backend)
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env)
    return out


@pytest.mark.parametrize("backend", ["openblas", "mkl"])
def test_backend_matches_torch(backend):
    pytest.importorskip("torch")
    out = _run(backend)
    if backend == "mkl" and "MKL was not found" in out.stderr:
        pytest.skip("MKL is not installed (pip install 'sparseconv[mkl]')")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["backend"] == backend
    assert max(result["errors"]) < 1e-5


def test_unknown_backend_is_a_clear_error():
    out = _run("cublas")
    assert out.returncode != 0
    assert "SPARSECONV_BLAS must be 'auto', 'mkl' or 'openblas'" in out.stderr


def _cpuinfo():
    """(vendor_id, flags) of the first CPU in /proc/cpuinfo: a reading independent of llvmlite's."""
    with open("/proc/cpuinfo") as f:
        fields = dict((key.strip(), value) for key, value in
                      (line.split(":", 1) for line in f.read().split("\n\n")[0].splitlines() if ":" in line))
    return fields["vendor_id"].strip(), set(fields["flags"].split())


@pytest.mark.skipif(not os.path.exists("/proc/cpuinfo"), reason="reads the CPU's vendor from /proc/cpuinfo")
def test_auto_takes_openblas_on_amd_with_avx512_else_mkl():
    pytest.importorskip("torch")
    out = _run("auto")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    vendor, flags = _cpuinfo()
    if vendor == "AuthenticAMD" and "avx512f" in flags:
        assert result["backend"] == "openblas" and "AMD CPU with AVX-512" in result["reason"]
    elif "MKL was not found" not in _run("mkl").stderr:
        assert result == dict(result, backend="mkl", reason="auto: MKL found")
    assert max(result["errors"]) < 1e-5
