"""Every sparseconv torch module under ``torch.compile(fullgraph=True)`` (inductor, CPU) against itself in eager mode.

fullgraph=True makes any graph break an error, so these also pin that no
module does Python work on tensor values (a ``float(tensor)``, an ``.item()``)
in its forward. Shapes are small: the time is inductor's compilation.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("sparseconv.torch")
modules = pytest.importorskip("sparseconv.torch.modules")

from test_torch import _operators  # noqa: E402

#: compiled and eager float64 differ only by the order of sums inductor picks
TOL = 1e-10


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def _close(a, b):
    a, b = a.detach(), b.detach()
    err = float((a - b).abs().max())
    assert err <= TOL * max(1.0, float(b.abs().max())), f"compiled differs from eager by {err:.3g}"


def _family_modules():
    ops = _operators(np.random.default_rng(5))
    made = {name: st.from_operator(op, padding=1) for name, op in ops.items()}
    made["dense with bias"] = st.from_operator(ops["dense"], padding=1, bias=np.arange(8.0))
    made["igcv1 with bias, stride 2"] = st.from_operator(ops["igcv1"], stride=2, padding=1, bias=np.ones(8))
    return made


FAMILIES = list(_family_modules())


@pytest.mark.parametrize("name", FAMILIES)
def test_family_module_compiles_fullgraph(name):
    module = _family_modules()[name].eval()
    x = torch.from_numpy(np.random.default_rng(6).standard_normal((2, 8, 7, 9)))
    compiled = torch.compile(module, fullgraph=True)
    with torch.no_grad():
        _close(compiled(x), module(x))


def test_every_module_class_is_compiled():
    """The parametrisations above and below reach every module class sparseconv.torch defines."""
    reached = set()

    def walk(m):
        reached.add(type(m).__name__)
        for child in m.children():
            walk(child)

    for module in _family_modules().values():
        walk(module)
    reached |= {"IGCV1Conv2d", "IGCV2Conv2d", "IGCV3Block"}  # test_igc_module_trains_compiled
    defined = {n for n in modules.__all__ if isinstance(getattr(modules, n), type)} | {"_WithBias"}
    assert defined <= reached, f"no compile test for {sorted(defined - reached)}"


@pytest.mark.parametrize("make", [
    lambda: st.IGCV1Conv2d(8, 2, 4, bias=True),
    lambda: st.IGCV2Conv2d(8, (2, 4)),
    lambda: st.IGCV3Block(8, 8, 2, groups=(2, 4)),
], ids=["IGCV1Conv2d", "IGCV2Conv2d", "IGCV3Block"])
def test_igc_module_trains_compiled(make):
    """Forward and backward in training mode (BN's batch statistics and running averages included)."""
    torch.manual_seed(4)
    eager = make().double()
    compiled_module = make().double()
    compiled_module.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_module, fullgraph=True)
    x = torch.randn(2, 8, 6, 7, dtype=torch.float64)
    a, b = compiled(x), eager(x)
    _close(a, b)
    (a * a).sum().backward()
    (b * b).sum().backward()
    for (name, pa), (_, pb) in zip(compiled_module.named_parameters(), eager.named_parameters()):
        _close(pa.grad, pb.grad)
    for (name, ba), (_, bb) in zip(compiled_module.named_buffers(), eager.named_buffers()):
        _close(ba.double(), bb.double())
