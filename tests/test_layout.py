"""The package's shape: no import cycles, kernels that import nothing public, tools on the public API,
and an ``import sparseconv`` that loads nothing heavy and changes nothing outside itself."""

import ast
import json
import pathlib
import re
import subprocess
import sys

import pytest

import sparseconv

PACKAGE = pathlib.Path(sparseconv.__file__).resolve().parent
ROOT = PACKAGE.parent


def _modules():
    out = {}
    for p in PACKAGE.rglob("*.py"):
        name = ".".join(p.relative_to(ROOT).with_suffix("").parts)
        out[name[:-len(".__init__")] if name.endswith(".__init__") else name] = p
    return out


MODULES = _modules()


def _imports(name):
    """Every sparseconv module ``name`` imports, anywhere in its file (inside functions too)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in MODULES and t != name)
    return found


GRAPH = {name: _imports(name) for name in MODULES}


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_the_walk_sees_the_imports():
    assert "sparseconv.operator" in GRAPH["sparseconv.dense"]
    assert "sparseconv._kernels.im2col" in GRAPH["sparseconv._kernels.conv"]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c"]]


def test_no_import_cycles():
    assert _cycles(GRAPH) == []


def test_kernels_import_nothing_public():
    allowed = {"sparseconv._config", "sparseconv._blas", "sparseconv._kernels"}
    for name, deps in GRAPH.items():
        if name.startswith("sparseconv._kernels"):
            bad = {d for d in deps if d not in allowed and not d.startswith("sparseconv._kernels.")}
            assert not bad, f"{name} imports {sorted(bad)}"


def test_the_core_imports_no_tool():
    tools = ("sparseconv.bench", "sparseconv.study", "sparseconv.cli", "sparseconv.torch")
    for name, deps in GRAPH.items():
        if not name.startswith(tools) and name != "sparseconv.__main__":  # python -m sparseconv runs the CLI
            bad = {d for d in deps if d.startswith(tools)}
            assert not bad, f"{name} imports {sorted(bad)}"


@pytest.mark.parametrize("tool", ["sparseconv.bench", "sparseconv.study", "sparseconv.cli"])
def test_tools_use_the_public_api(tool):
    """Tools import public modules, their own package and the shared table helper; no private name of the core."""
    own = tool if tool != "sparseconv.cli" else "sparseconv"
    for name, deps in GRAPH.items():
        if not (name == tool or name.startswith(tool + ".")):
            continue
        for d in deps:
            private = any(part.startswith("_") for part in d.split(".")[1:])
            inside = tool != "sparseconv.cli" and d.startswith(own + ".")
            assert not private or inside or d == "sparseconv._table", f"{name} imports {d}"
        text = MODULES[name].read_text()
        assert not re.search(r"\b(sc|sparseconv)\._[a-z]", text), f"{name} reaches a private name of the core"


def test_import_leaves_the_process_as_it_was():
    code = """
import json, os, sys
before = dict(os.environ)
import sparseconv
maps = open("/proc/self/maps").read() if os.path.exists("/proc/self/maps") else ""
print(json.dumps({"env": dict(os.environ) == before,
                  "heavy": [m for m in ("torch", "matplotlib", "onnx", "onnxruntime", "mkl") if m in sys.modules],
                  "mkl_loaded": "libmkl" in maps,
                  "blas_chosen": sparseconv._blas._chosen.cache_info().currsize}))
"""
    out = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert out == {"env": True, "heavy": [], "mkl_loaded": False, "blas_chosen": 0}
