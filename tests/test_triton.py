"""The fused IGC kernels (Triton) against the composed torch ops, the numba operators, NumPy and finite differences.

Without a GPU they run on the CPU in Triton's interpreter: conftest.py sets
TRITON_INTERPRET=1 where there is no NVIDIA GPU, before anything imports
triton. Shapes are small: the interpreter runs each program in Python.
"""

import copy
import sys

import numpy as np
import pytest

import sparseconv as sc

torch = pytest.importorskip("torch")
pytest.importorskip("triton")
st = pytest.importorskip("sparseconv.torch")
SF = st.functional
from sparseconv.torch import _triton  # noqa: E402


DEVICE = "cuda" if torch.cuda.is_available() and not _triton.INTERPRET else "cpu"
if DEVICE == "cpu" and not _triton.INTERPRET:
    pytest.skip("no GPU, and triton was imported before TRITON_INTERPRET=1 was set",
                allow_module_level=True)
#: float64 is exact to rounding in the interpreter; on a GPU, float32 dots may run in TF32 (as cuDNN's convs do)
DTYPES = [torch.float64, torch.float32]

IGCV1_CASES = [  # L, M, H, W, geometry
    (2, 3, 5, 6, dict(padding=1)),
    (3, 2, 7, 6, dict(stride=2, padding=1)),
    (4, 2, 6, 6, dict(padding=2, dilation=2)),
    (1, 3, 4, 4, dict(padding="same")),
    (5, 1, 4, 5, dict()),
    (2, 2, 5, 9, dict(padding=(0, 2), stride=(1, 2))),
    (16, 1, 4, 4, dict(padding=1)),  # L >= 16
    (2, 70, 5, 5, dict(padding=1)),  # several blocks of m and chunks of c (float32: 2 and 3; float64: 5 and 9)
]


def _tol(dtype):
    return 1e-12 if dtype == torch.float64 else (2e-5 if DEVICE == "cpu" else 5e-3)


def _close(a, b, dtype):
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    scale = max(1.0, float(b.abs().max()))
    err = float((a - b).abs().max())
    assert err <= _tol(dtype) * scale, f"max abs error {err:.3g}"


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("L, M, H, W, geom", IGCV1_CASES, ids=str)
def test_fused_igcv1_matches_composed_and_numba(L, M, H, W, geom, dtype):
    gen = torch.Generator().manual_seed(L * 100 + M)
    x = torch.randn(2, L * M, H, W, generator=gen, dtype=dtype).to(DEVICE).requires_grad_()
    p = torch.randn(L * M, M, 3, 3, generator=gen, dtype=dtype).to(DEVICE).requires_grad_()
    s = torch.randn(L * M, L, 1, 1, generator=gen, dtype=dtype).to(DEVICE).requires_grad_()
    fused = SF.igc_conv2d(x, p, s, L, M, backend="fused", **geom)
    composed = SF.igc_conv2d(x, p, s, L, M, backend="composed", **geom)
    _close(fused, composed, dtype)
    op = sc.IGCV1(p.detach().cpu().double().numpy(), s.detach().cpu().double().numpy(), L, M)
    _close(fused, torch.from_numpy(sc.conv2d(x.detach().cpu().double().numpy(), op, **geom)), dtype)
    g = torch.randn(fused.shape, generator=gen, dtype=dtype).to(DEVICE)
    for a, b in zip(torch.autograd.grad(fused, (x, p, s), g), torch.autograd.grad(composed, (x, p, s), g)):
        _close(a, b, dtype)


def _pointwise_oracle(x, w, groups, in_perm, out_perm):
    """NumPy: the grouped 1x1 conv as one einsum per group, the permutations as fancy indexing."""
    x = x if in_perm is None else x[:, in_perm]
    c_out, cin_g = w.shape[:2]
    cout_g = c_out // groups
    y = np.concatenate([np.einsum("ok,nkhw->nohw", w[g * cout_g:(g + 1) * cout_g, :, 0, 0],
                                  x[:, g * cin_g:(g + 1) * cin_g]) for g in range(groups)], axis=1)
    return y if out_perm is None else y[:, out_perm]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("c_in, c_out, groups, perms", [(12, 9, 3, "both"), (8, 8, 1, "in"), (6, 4, 2, "out"),
                                                        (40, 36, 2, "both"), (5, 3, 1, "none")], ids=str)
def test_fused_pointwise_matches_numpy(c_in, c_out, groups, perms, dtype):
    rng = np.random.default_rng(c_in * 10 + c_out)
    x = rng.standard_normal((2, c_in, 5, 7))
    w = rng.standard_normal((c_out, c_in // groups, 1, 1))
    in_perm = rng.permutation(c_in) if perms in ("in", "both") else None
    out_perm = rng.permutation(c_out) if perms in ("out", "both") else None

    def t(a, dt=dtype):
        return None if a is None else torch.from_numpy(a).to(DEVICE, dt)

    fused = SF.permuted_pointwise(t(x), t(w), groups, t(in_perm, torch.int64), t(out_perm, torch.int64), "fused")
    _close(fused, torch.from_numpy(_pointwise_oracle(x, w, groups, in_perm, out_perm)), dtype)


def test_fused_backward_by_finite_differences():
    """gradcheck: the backward (composed ops) is the derivative of the fused forward, not just of the composed one."""
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(1, 4, 4, 4, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
    p = torch.randn(4, 2, 3, 3, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
    s = torch.randn(4, 2, 1, 1, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
    assert torch.autograd.gradcheck(lambda *a: SF.igc_conv2d(*a, 2, 2, padding=1, backend="fused"), (x, p, s),
                                    fast_mode=True)
    w = torch.randn(6, 2, 1, 1, generator=gen, dtype=torch.float64).to(DEVICE).requires_grad_()
    perm = torch.tensor([3, 0, 2, 1], device=DEVICE)
    out = torch.tensor([5, 1, 4, 0, 3, 2], device=DEVICE)
    assert torch.autograd.gradcheck(lambda a, b: SF.permuted_pointwise(a, b, 2, perm, out, "fused"), (x, w),
                                    fast_mode=True)


def _in_channels(module):
    if isinstance(module, st.IGCV3Block):
        return module.expand.in_channels
    return module.L * module.M if isinstance(module, st.IGCV1Conv2d) else module.channels


def _twins(module):
    """The module with the composed backend and a copy with the fused one (same parameters and buffers)."""
    fused = copy.deepcopy(module)
    fused.backend = "fused"
    return module.to(DEVICE), fused.to(DEVICE)


@pytest.mark.parametrize("make", [
    lambda: st.IGCV1Conv2d(6, 2, 3, bias=True),
    lambda: st.IGCV1Conv2d(6, 3, 2, stride=2),
    lambda: st.IGCV2Conv2d(8, (2, 4)),        # strictly complementary: digit permutations
    lambda: st.IGCV2Conv2d(12, (3, 2)),       # channel shuffles
    lambda: st.IGCV3Block(8, 8, 2, groups=(2, 4)),
    lambda: st.IGCV3Block(6, 4, 2, stride=2, groups=(3, 2)),
], ids=["igcv1", "igcv1 s2", "igcv2 complementary", "igcv2 shuffles", "igcv3", "igcv3 s2"])
def test_modules_fused_equal_composed_training_and_eval(make):
    torch.manual_seed(3)
    composed, fused = _twins(make().double())
    x = torch.randn(2, _in_channels(composed), 6, 7, dtype=torch.float64, device=DEVICE)
    for mode in ("train", "eval"):
        composed.train(mode == "train")
        fused.train(mode == "train")
        a, b = fused(x), composed(x)
        _close(a, b, torch.float64)
        if mode == "train":
            (a * a).sum().backward()
            (b * b).sum().backward()
            for (name, pa), (_, pb) in zip(fused.named_parameters(), composed.named_parameters()):
                _close(pa.grad, pb.grad, torch.float64)
    for (name, ba), (_, bb) in zip(fused.named_buffers(), composed.named_buffers()):
        assert torch.equal(ba.cpu(), bb.cpu()) or float((ba.double() - bb.double()).abs().max()) < 1e-12, name


def test_backend_choice_and_errors(monkeypatch):
    x = torch.zeros(1, 4, 3, 3)
    assert SF.igc_backend(x) == "composed" and SF.igc_backend(x, "composed") == "composed"
    assert SF.igc_backend(x.to(DEVICE), "fused") == "fused"
    with pytest.raises(ValueError, match="backend must be one of 'auto', 'composed', 'fused'"):
        SF.igc_backend(x, "triton")
    with pytest.raises(ValueError, match="backend must be one of"):
        st.IGCV1Conv2d(4, 2, 2, backend="cuda")
    with pytest.raises(TypeError, match="backend must be a str"):
        st.IGCV3Block(4, 4, 2, backend=None)
    monkeypatch.setattr(_triton, "INTERPRET", False)
    if DEVICE == "cpu":
        with pytest.raises(ValueError, match="x must be a CUDA tensor .* TRITON_INTERPRET=1"):
            SF.igc_conv2d(x, torch.zeros(4, 2, 3, 3), torch.zeros(4, 2, 1, 1), 2, 2, backend="fused")
    with pytest.raises(ValueError, match=r"in_perm must be 1-D of length 4, got shape \(3,\)"):
        SF.permuted_pointwise(x, torch.zeros(4, 4, 1, 1), 1, torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="out_perm must be a permutation of 0 .. 3"):
        SF.permuted_pointwise(x, torch.zeros(4, 4, 1, 1), 1, None, torch.tensor([0, 1, 1, 3]))
    with pytest.raises(TypeError, match="in_perm must be None or an integer tensor, got list"):
        SF.permuted_pointwise(x, torch.zeros(4, 4, 1, 1), 1, [0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"weight must have shape \(C_out, C_in/groups, 1, 1\)"):
        SF.permuted_pointwise(x, torch.zeros(4, 4, 3, 3), 1)


def test_auto_takes_the_fused_pointwise_for_inference_on_cuda_only(monkeypatch):
    from sparseconv.torch import _ops

    monkeypatch.setattr(_ops, "_on_cuda", lambda x: True)  # as on a GPU: the kernels run here in the interpreter
    x, w = torch.zeros(1, 4, 3, 3), torch.zeros(4, 4, 1, 1, requires_grad=True)
    assert SF.igc_backend(x, "auto", "pointwise") == "fused"
    assert SF.igc_backend(x, "auto", "pointwise", (w,)) == "composed"  # training: the fused backward recomputes
    with torch.no_grad():
        assert SF.igc_backend(x, "auto", "pointwise", (w,)) == "fused"
        assert SF.igc_backend(x, "auto", "igcv1") == SF.igc_backend(x, "auto", "igcv3_block") == "composed"
        assert SF.igc_backend(x, "composed", "pointwise") == "composed"
    with pytest.raises(ValueError, match="kind must be one of 'igcv1', 'pointwise', 'igcv3_block'"):
        SF.igc_backend(x, "auto", "igcv2")

    torch.manual_seed(3)
    module = st.IGCV2Conv2d(16, (4, 4)).to(DEVICE)
    calls = []
    fused_apply = _ops._FusedPointwise.apply
    monkeypatch.setattr(_ops._FusedPointwise, "apply", lambda *a: calls.append(1) or fused_apply(*a))
    x = torch.randn(2, 16, 5, 5, device=DEVICE)
    composed = module(x)  # parameters that need a gradient, grad mode on: composed
    assert calls == []
    with torch.no_grad():
        _close(module(x), composed, torch.float32)
    assert len(calls) == 2  # IGCV2's two 1x1 convs, each with its permutations as indices
    monkeypatch.setattr(_ops, "_triton_installed", lambda: False)
    with torch.no_grad():
        assert SF.igc_backend(x, "auto", "pointwise") == "composed"


def test_missing_triton_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)
    monkeypatch.delitem(sys.modules, "sparseconv.torch._triton")
    monkeypatch.delattr(st, "_triton")  # else `from . import _triton` finds the loaded module on the package
    with pytest.raises(ImportError, match="pip install triton"):
        SF.igc_backend(torch.zeros(1, 4, 3, 3), "fused")
