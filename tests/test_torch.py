"""The torch path against sparseconv.conv2d (float64, tight) and torch's own conv2d on the operators' weights."""

import numpy as np
import pytest

import sparseconv as sc

torch = pytest.importorskip("torch")
st = pytest.importorskip("sparseconv.torch")
F = torch.nn.functional
SF = st.functional

from conftest import assert_close  # noqa: E402

GEOMETRIES = [dict(padding=1), dict(stride=2, padding=1), dict(padding=2, dilation=2), dict(padding="same")]


def _t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


def _operators(rng):
    w = rng.standard_normal((8, 8, 3, 3))
    ops = {
        "dense": sc.DenseWeight(w),
        "block_diagonal": sc.block_diagonal(w, 4),
        "low_rank": sc.low_rank(w, rank=3),
        "spatial_low_rank": sc.spatial_low_rank(w, 2),
        "reduce_channels": sc.reduce_channels(w, keep_out=5, keep_in=6),
        "prune csr": sc.prune(w, 0.7),
        "prune n:m": sc.prune(w, structure="n:m", n=2, m=4),
        "prune block": sc.prune(w, 0.5, structure="block", block=(2, 2)),
        "binary": sc.binarize(w),
        "binary act": sc.binarize(w, activations="binary"),
        "quantize": sc.quantize(w, 4, "affine"),
        "quantize act": sc.quantize(w, 8, activations=8),
        "kmeans": sc.kmeans_quantize(w, n_clusters=8, per_channel=False),
        "kmeans per channel": sc.kmeans_quantize(w, n_clusters=4, per_channel=True),
        "igcv1": sc.IGCV1.random(2, 4, seed=1, dtype=np.float64),
        "igcv2": sc.IGCV2.random(8, (2, 4), seed=2, dtype=np.float64),
        "igcv3": sc.IGCV3.random(8, 8, expansion=2, groups=(2, 2), seed=3, dtype=np.float64),
        "product": sc.ProductWeight([sc.channel_shuffle_permutation(8, 2), sc.block_diagonal(w, 2)]),
    }
    return ops


NAMES = list(_operators(np.random.default_rng(0)))
LINEAR = {n for n in NAMES if n not in ("binary act", "quantize act")}


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("geom", GEOMETRIES, ids=str)
def test_operator_conv2d_and_from_operator(rng, name, geom):
    op = _operators(rng)[name]
    x = rng.standard_normal((2, 8, 9, 10))
    if geom.get("padding") == "same" and geom.get("stride", 1) != 1:
        pytest.skip("'same' needs stride 1")
    expected = sc.conv2d(x, op, **geom)
    got = SF.operator_conv2d(_t(x), op, **geom).numpy()
    assert_close(got, expected, np.float64)
    if name in LINEAR:  # an independent oracle too: torch's conv2d on the operator's weight
        oracle = SF.conv2d(_t(x), _t(op.to_weight()), None, **geom).numpy()
        assert_close(got, oracle, np.float64)
    module = st.from_operator(op, **geom)
    assert_close(module(_t(x)).detach().numpy(), expected, np.float64)
    back = st.to_operator(module)
    assert type(back) is type(op) or name == "product"
    assert_close(back.to_dense(), op.to_dense(), np.float64)


def test_channel_shuffle_matches_torch(rng):
    x = _t(rng.standard_normal((2, 12, 3, 4)))
    for groups in (1, 2, 3, 4, 6, 12):
        assert torch.equal(SF.channel_shuffle(x, groups), F.channel_shuffle(x, groups))
        perm = sc.channel_shuffle_permutation(12, groups).perm
        assert torch.equal(SF.channel_shuffle(x, groups), x[:, perm])
    with pytest.raises(ValueError, match="groups must be a positive int dividing"):
        SF.channel_shuffle(x, 5)


def test_igc_conv2d_special_cases(rng):
    x = _t(rng.standard_normal((2, 6, 7, 7)))
    # L = 1: a regular conv followed by a per-channel scale
    p, s = _t(rng.standard_normal((6, 6, 3, 3))), _t(rng.standard_normal((6, 1, 1, 1)))
    assert_close(SF.igc_conv2d(x, p, s, 1, 6, padding=1).numpy(),
                 F.conv2d(x, p * s, padding=1).numpy(), np.float64)
    # M = 1: depthwise, then a dense 1x1
    p, s = _t(rng.standard_normal((6, 1, 3, 3))), _t(rng.standard_normal((6, 6, 1, 1)))
    assert_close(SF.igc_conv2d(x, p, s, 6, 1, padding=1).numpy(),
                 F.conv2d(F.conv2d(x, p, padding=1, groups=6), s).numpy(), np.float64)
    with pytest.raises(ValueError, match="primary must have shape"):
        SF.igc_conv2d(x, p, s, 2, 3)


@pytest.mark.parametrize("module, op_of", [
    (lambda: st.IGCV1Conv2d(8, 2, 4), lambda m: m.to_operator()),
    (lambda: st.IGCV1Conv2d(12, 3, 4, stride=2), lambda m: m.to_operator()),
    (lambda: st.IGCV2Conv2d(8, (2, 2, 2)), lambda m: m.to_operator()),
    (lambda: st.IGCV2Conv2d(12, (2, 3)), lambda m: m.to_operator()),
])
def test_igc_modules_equal_their_operators(rng, module, op_of):
    m = module().double()
    x = rng.standard_normal((2, m.to_operator().kernel_shape[1], 8, 8))
    op = op_of(m)
    assert_close(m(_t(x)).detach().numpy(), sc.conv2d(x, op, stride=m.stride, padding=m.padding), np.float64)
    assert sum(p.numel() for p in m.parameters()) == op.num_params
    again = st.from_operator(op, stride=m.stride, padding=m.padding)
    assert_close(again(_t(x)).detach().numpy(), m(_t(x)).detach().numpy(), np.float64)


def test_igcv3_block_follows_the_authors_code(rng):
    block = st.IGCV3Block(8, 8, expansion=6, stride=1, groups=(2, 2)).double().eval()
    for bn in (block.bn1, block.bn2, block.bn3):  # non-trivial statistics
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.5, 2.0)
    x = _t(rng.standard_normal((2, 8, 6, 6)))
    y = F.batch_norm(F.conv2d(x, block.expand.weight, groups=2), block.bn1.running_mean, block.bn1.running_var,
                     block.bn1.weight, block.bn1.bias, eps=block.bn1.eps)  # no activation after the expansion
    y = F.channel_shuffle(y, 2)
    y = F.conv2d(y, block.depthwise.weight, padding=1, groups=48)
    y = F.relu6(F.batch_norm(y, block.bn2.running_mean, block.bn2.running_var, block.bn2.weight, block.bn2.bias,
                             eps=block.bn2.eps))
    y = F.batch_norm(F.conv2d(y, block.reduce.weight, groups=2), block.bn3.running_mean, block.bn3.running_var,
                     block.bn3.weight, block.bn3.bias, eps=block.bn3.eps)
    assert_close(block(x).detach().numpy(), (x + y).detach().numpy(), np.float64)
    assert st.IGCV3Block(8, 16, stride=2).residual is False
    assert st.IGCV3Block(8, 8, expansion=1).expand.out_channels == 8  # kept at t = 1
    assert all(c.bias is None for c in (block.expand, block.depthwise, block.reduce))
    op = block.to_operator()
    assert isinstance(op, sc.IGCV3) and op.groups == (2, 2)


@pytest.mark.parametrize("make", [
    lambda: st.IGCV1Conv2d(8, 2, 4),
    lambda: st.IGCV2Conv2d(8, (2, 4)),
    lambda: st.IGCV3Block(8, 8, expansion=2),
])
def test_igc_modules_train(make):
    torch.manual_seed(0)
    m = make()
    target = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
    x = torch.randn(16, 8, 8, 8)
    with torch.no_grad():
        y = target(x)
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        loss = F.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("op", [
    sc.binarize(np.random.default_rng(1).standard_normal((6, 4, 3, 3)), activations="binary"),
    sc.quantize(np.random.default_rng(2).standard_normal((6, 4, 3, 3)), 4, activations=8),
    sc.kmeans_quantize(np.random.default_rng(3).standard_normal((6, 4, 3, 3)), n_clusters=4),
])
def test_straight_through_layers_give_finite_gradients(rng, op):
    m = st.from_operator(op, padding=1)
    x = _t(rng.standard_normal((2, 4, 5, 5))).requires_grad_()
    m(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    grads = [p.grad for p in m.parameters()]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_from_conv_grouped_and_depthwise(rng):
    torch.manual_seed(0)
    x = _t(rng.standard_normal((2, 8, 7, 7))).float()
    for conv in (torch.nn.Conv2d(8, 8, 3, padding=1, groups=2), torch.nn.Conv2d(8, 8, 3, padding=1, groups=8),
                 torch.nn.Conv2d(8, 16, 3, stride=2, padding=1, groups=4)):
        exact = st.from_conv(conv, "block_diagonal")  # an already grouped conv is exactly block-diagonal
        assert_close(exact(x).detach().numpy(), conv(x).detach().numpy(), np.float32)
        for method, kwargs in (("prune", dict(amount=0.5)), ("quantize", dict(bits=8)), ("low_rank", dict(rank=4)),
                               ("binary", {}), ("kmeans", dict(n_clusters=4)), ("spatial_low_rank", dict(rank=2))):
            m = st.from_conv(conv, method, **kwargs)
            assert m(x).shape == conv(x).shape
    square = torch.nn.Conv2d(8, 8, 3, padding=1, bias=False)
    for method, kwargs in (("igcv1", dict(L=2, M=4, max_iter=3)), ("igcv2", dict(branch_sizes=(2, 4), max_iter=3)),
                           ("igcv3", dict(expansion=2, max_iter=3))):
        m = st.from_conv(square, method, **kwargs)
        op = st.to_operator(m)
        assert_close(m(x).detach().numpy(), sc.conv2d(x.numpy(), op, padding=1), np.float32)
    with pytest.raises(ValueError, match="method must be one of"):
        st.from_conv(square, "svd")


def test_compress(rng):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 8, 3, padding=1, groups=4), torch.nn.ReLU(),
                                torch.nn.Conv2d(8, 4, 1))
    x = torch.randn(2, 3, 6, 6)
    before = model(x).detach()
    report = st.compress(model, "block_diagonal", filter=lambda name, conv: conv.groups > 1)
    assert [r["name"] for r in report] == ["2"] and report[0]["relative_error"] == 0
    assert torch.allclose(model(x), before, atol=1e-6)
    report = st.compress(model, "igcv1", errors="skip", L=2, M=4, max_iter=2)
    assert [(r["name"], r["replaced"]) for r in report] == [("0", False), ("4", False)]
    assert "square" in report[0]["reason"]
    with pytest.raises(ValueError, match="0: weight must be square"):
        st.compress(model, "igcv1", L=2, M=4)


def test_models_match_the_published_sizes():
    # parameter counts of torchvision's models of these names (and of the papers)
    for build, params, macs, rel in ((st.mobilenet_v2, 3_504_872, 300e6, 0.01), (st.resnet18, 11_689_512, 1.8e9,
                                                                                 0.02)):
        model = build()
        assert sum(p.numel() for p in model.parameters()) == params
        table = st.count_cost(model, (1, 3, 224, 224))
        assert table.params == params
        assert abs(table.macs - macs) <= rel * macs
    try:
        import torchvision
    except ImportError:
        return
    for ours, theirs in ((st.mobilenet_v2(), torchvision.models.mobilenet_v2()),
                         (st.resnet18(), torchvision.models.resnet18())):
        assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_model_builders_run():
    for model, c in ((st.igcv3_d(width_mult=0.35, num_classes=10, small_input=True), 3),
                     (st.mobilenet_v2(width_mult=0.35, num_classes=10, small_input=True), 3),
                     (st.resnet18(num_classes=10, small_input=True), 3),
                     (st.igc_resnet18(L=4, num_classes=10, small_input=True), 3),
                     (st.igc_resnet18(None, M=8, num_classes=10, in_channels=1, small_input=True), 1)):
        assert model(torch.randn(2, c, 32, 32)).shape == (2, 10)
    assert st.igc_resnet18(L=4)(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_count_cost_hand_counts():
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1, bias=False),
                                torch.nn.Conv2d(8, 8, 3, padding=1, groups=4, bias=False),
                                torch.nn.Flatten(), torch.nn.Linear(8 * 5 * 5, 10))
    table = st.count_cost(model, (2, 3, 5, 5))
    macs = [r["macs"] for r in table.rows]
    assert macs == [8 * 3 * 9 * 2 * 25, 8 * 2 * 9 * 2 * 25, 0, 200 * 10 * 2]
    assert table.params == 8 * 27 + 8 * 18 + 200 * 10 + 10
    assert "total" in str(table)


def test_count_cost_matches_the_core_cost_model(rng):
    op = sc.IGCV1.random(4, 4, seed=0)
    sparse = sc.prune(rng.standard_normal((16, 16, 3, 3)), 0.9)
    binary = sc.binarize(rng.standard_normal((16, 16, 3, 3)), activations="binary")
    for o in (op, sparse, binary):
        model = torch.nn.Sequential(st.from_operator(o, padding=1))
        table = st.count_cost(model, (2, 16, 10, 10))
        core = sc.conv_cost(o, (2, 16, 10, 10), padding=1)
        assert table.rows[0]["macs"] == core.macs and table.rows[0]["bitops"] == core.bitops
        assert table.rows[0]["params"] == o.num_params
    assert st.count_cost(torch.nn.Sequential(st.from_operator(sparse, padding=1)), (1, 16, 4, 4)).macs == \
        sparse.nnz * 16


def test_count_cost_prices_a_compressed_conv_with_its_bias_as_the_conv_itself():
    """from_conv keeps a conv's bias by wrapping the module: the row names the family's module and costs it."""
    torch.manual_seed(0)
    rows = {}
    for bias in (False, True):
        conv = torch.nn.Conv2d(16, 16, 3, padding=1, bias=bias)
        model = torch.nn.Sequential(st.from_conv(conv, "igcv1", L=4, M=4, max_iter=1))
        (rows[bias],) = st.count_cost(model, (2, 16, 10, 10)).rows
    assert rows[False]["type"] == "IGCV1Conv2d" and rows[True]["type"] == "IGCV1Conv2d + bias"
    assert rows[True]["params"] == rows[False]["params"] + 16
    for key in ("macs", "bytes_moved"):  # the two channel shuffles are counted either way
        assert rows[True][key] == rows[False][key], key


def test_import_error_names_the_extra(monkeypatch):
    import subprocess
    import sys

    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import sparseconv.torch\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "pip install 'sparseconv[torch]'" in out


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", NAMES)
def test_cuda_equals_cpu(rng, name):
    op = _operators(rng)[name]
    x = rng.standard_normal((2, 8, 9, 10))
    cpu = SF.operator_conv2d(_t(x), op, padding=1).numpy()
    gpu = SF.operator_conv2d(_t(x).cuda(), op, padding=1)
    assert gpu.device.type == "cuda"
    assert_close(gpu.cpu().numpy(), cpu, np.float64)
    module = st.from_operator(op, padding=1).cuda()
    assert_close(module(_t(x).cuda()).detach().cpu().numpy(), cpu, np.float64)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_models_and_training():
    model = st.igc_resnet18(L=4, num_classes=10, small_input=True).cuda()
    x = torch.randn(4, 3, 32, 32, device="cuda")
    assert model(x).shape == (4, 10)
    block = st.IGCV3Block(16, 16).cuda()
    block(torch.randn(2, 16, 8, 8, device="cuda")).sum().backward()
    assert all(p.grad is not None and p.grad.device.type == "cuda" for p in block.parameters())
