"""Compiled kernels are cached outside the package, so installs and uninstalls never leave files in it."""

import os
import pathlib
import re
import subprocess
import sys

import pytest

import sparseconv
from sparseconv import _config

PACKAGE = pathlib.Path(sparseconv.__file__).resolve().parent

RUN_KERNELS = """
import numpy as np, sparseconv as sc
from sparseconv import _config
from sparseconv._kernels import conv as _conv, im2col as _im2col, sparse as _sparse, bits as _bits, lowp as _lowp
from sparseconv._kernels import channels_last as _cl
x = np.random.default_rng(0).standard_normal((1, 8, 9, 9)).astype(np.float32)
w = np.random.default_rng(1).standard_normal((4, 8, 3, 3)).astype(np.float32)
sc.conv2d(x, w, padding=1, stride=2)  # channels-last
sc.conv2d(np.ascontiguousarray(x[:, :2]), np.ascontiguousarray(w[:, :2]), stride=2)  # im2col
cached = [d for m in (_conv, _im2col, _sparse, _bits, _lowp, _cl) for d in vars(m).values()
          if getattr(d, "_cache", None) is not None and type(d._cache).__name__ == "_Cache"]
assert cached, "no kernel is cached"
for d in cached:
    assert d._cache.cache_path.startswith(_config.cache_dir()), d._cache.cache_path
print(len(cached))
"""


def _compiled_files(root):
    return {p for p in root.rglob("*") if p.suffix in (".nbi", ".nbc")}


def _run(code, **env):
    done = subprocess.run([sys.executable, "-c", code], cwd=os.path.dirname(PACKAGE), capture_output=True, text=True,
                          env=dict(os.environ, **env), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_kernels_are_cached_in_the_cache_dir_not_the_package(tmp_path):
    before = _compiled_files(PACKAGE)
    out = _run(RUN_KERNELS, SPARSECONV_CACHE_DIR=str(tmp_path))
    assert int(out) > 0
    assert _compiled_files(tmp_path), "nothing was cached"
    assert _compiled_files(PACKAGE) == before, "compiled kernels were written into the package"
    # a second process loads them instead of compiling, the kernels that call BLAS too (its address is an argument)
    stats = _run("import numpy as np, sparseconv as sc\n"
                 "from sparseconv._kernels import conv as _conv, channels_last as _cl\n"
                 "x8, w8 = np.ones((1, 8, 9, 9), np.float32), np.ones((4, 8, 3, 3), np.float32)\n"
                 "x2, w2 = np.ones((1, 2, 9, 9), np.float32), np.ones((4, 2, 3, 3), np.float32)\n"
                 "assert sc.conv2d_method(x8, w8, stride=2).startswith('channels-last')\n"
                 "assert sc.conv2d_method(x2, w2, stride=2).startswith('im2col')\n"
                 "sc.conv2d(x8, w8, stride=2)\nsc.conv2d(x2, w2, stride=2)\n"
                 "print(*(sum(getattr(k.stats, s).values()) for k in (_cl.conv_im2col_cl, _conv.conv_im2col)"
                 " for s in ('cache_hits', 'cache_misses')))",
                 SPARSECONV_CACHE_DIR=str(tmp_path))
    hits_cl, misses_cl, hits, misses = map(int, stats.split())
    assert hits_cl >= 1 and misses_cl == 0 and hits >= 1 and misses == 0, stats


@pytest.mark.slow
def test_an_unwritable_cache_dir_compiles_in_memory(tmp_path):
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    code = ("import numpy as np, sparseconv as sc\n"
            "y = sc.conv2d(np.ones((1, 2, 5, 5), np.float32), np.ones((3, 2, 3, 3), np.float32), padding=1)\n"
            "print(float(y[0, 0, 2, 2]))")
    assert float(_run(code, SPARSECONV_CACHE_DIR=str(blocked / "sub"))) == 18.0


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("SPARSECONV_CACHE_DIR", str(tmp_path / "mine"))
    assert _config.cache_dir() == str(tmp_path / "mine")
    monkeypatch.delenv("SPARSECONV_CACHE_DIR")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path / "numba"))
    assert _config.cache_dir() == str(tmp_path / "numba")
    monkeypatch.delenv("NUMBA_CACHE_DIR")
    if sys.platform.startswith("linux"):
        monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
        assert _config.cache_dir() == str(tmp_path / "xdg" / "sparseconv")
    assert not _config.cache_dir().startswith(str(PACKAGE))


def test_every_kernel_is_compiled_through_config():
    """No module calls numba.njit/jit itself: flags and the cache location come from _config."""
    direct = re.compile(r"\bnumba\.(njit|jit)\b|^\s*from numba import [^\n]*\b(njit|jit)\b|^\s*@(njit|jit)\b(?!\()",
                        re.M)
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "_config.py" and direct.search(p.read_text())]
    kernels = [p for p in (PACKAGE / "_kernels").glob("*.py") if p.name != "__init__.py"]
    assert kernels and all("@jit(**" in p.read_text() or "@intrinsic" in p.read_text() for p in kernels)
    assert offenders == []
