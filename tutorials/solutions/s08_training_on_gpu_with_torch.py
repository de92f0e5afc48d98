"""Solutions to the exercises of tutorial 8. Each function answers one exercise and checks its answer
against a computation that does not use the code it is about (the test suite runs them all)."""

import time

import numpy as np
import torch

import sparseconv as sc
import sparseconv.torch as st
from sparseconv.datasets import load_digits
from sparseconv.study.network import torch_model


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def _fine_tune(model, steps=30):
    x_train, y_train = (torch.from_numpy(a) for a in load_digits("train"))
    for p in model.parameters():
        p.requires_grad_(False)
    trainable = [p for p in model[3].parameters() if p.is_floating_point()]
    for p in trainable:
        p.requires_grad_(True)
    opt = torch.optim.Adam(trainable, lr=1e-3)
    model.train()
    for _ in range(steps):
        idx = torch.randint(0, len(x_train), (64,))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x_train[idx]), y_train[idx]).backward()
        opt.step()
    return model.eval()


def exercise_1():
    """4-bit weights lose nothing measurable before fine-tuning (97.7%, the dense network's accuracy) and so
    have nothing to recover; 90% pruning drops to 88% and 30 steps of fine-tuning the surviving values bring
    it back to 97%: pruning loses more before, and nearly catches up after."""
    torch.manual_seed(0)
    x, y = (torch.from_numpy(a) for a in load_digits("test"))
    dense = _accuracy(torch_model(), x, y)
    result = {}
    for family, params in (("quantize", dict(bits=4)), ("prune", dict(amount=0.9))):
        model = torch_model()
        (row,) = st.compress(model, family, filter=lambda name, conv: conv.in_channels == 64, **params)
        # the replaced layer computes what the core operator computes
        xin = torch.randn(2, 64, 14, 14)
        with torch.no_grad():
            assert np.allclose(model[3](xin).numpy(), sc.conv2d(xin.numpy(), model[3].to_operator(),
                                                                model[3].bias.numpy(), padding=1), atol=1e-4)
        before = _accuracy(model, x, y)
        result[family] = (before, _accuracy(_fine_tune(model), x, y))
    assert result["quantize"][0] >= dense - 0.01
    assert result["prune"][0] < result["quantize"][0] - 0.05
    assert result["prune"][1] > result["prune"][0] + 0.03
    return dense, result


def exercise_2():
    """The MACs of the replaced conv fall from C_out C_in kH kW per pixel (7.2 M) to its factors' own (1.9 M
    for IGCV1 (4, 16)): count_cost's row for the new module is the core operator's conv_cost, and every
    other layer is unchanged."""
    shape = (1, 1, 28, 28)
    model = torch_model()
    before = {r["name"]: r for r in st.count_cost(model, shape).rows}
    st.compress(model, "igcv1", filter=lambda name, conv: conv.in_channels == 64, L=4, M=16, max_iter=2)
    after = {r["name"]: r for r in st.count_cost(model, shape).rows}
    replaced = after["3"]["macs"]
    assert before["3"]["macs"] == 64 * 64 * 9 * 14 * 14
    assert replaced == sc.conv_cost(model[3].to_operator(), (1, 64, 14, 14), padding=1).macs
    assert replaced == 4 * 16 * 16 * 9 * 14 * 14 + 16 * 4 * 4 * 14 * 14  # L blocks of M x M x 9, M of L x L
    for name, r in after.items():
        if name != "3":
            assert r["macs"] == before[name]["macs"], name
    return before["3"]["macs"], replaced


def exercise_3():
    """Timed on whatever device is here (CUDA if present, else the CPU; `sparseconv bench torch --devices
    cuda` does it on the whole layer set): IGCV1Conv2d's forward against nn.Conv2d at the same width,
    both checked against the multiplied-out weight's conv. The times are returned, not asserted."""
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    layer = st.IGCV1Conv2d(64, L=4, M=16).to(device).eval()
    dense = torch.nn.Conv2d(64, 64, 3, padding=1, bias=False).to(device).eval()
    x = torch.randn(8, 64, 28, 28, device=device)
    weight = torch.from_numpy(layer.to_operator().to_weight()).to(device)
    with torch.no_grad():
        assert torch.allclose(layer(x), torch.nn.functional.conv2d(x, weight, padding=1), atol=1e-4)
    times = {}
    for name, module in (("IGCV1Conv2d", layer), ("nn.Conv2d", dense)):
        with torch.no_grad():
            module(x)
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(5):
                module(x)
            if device == "cuda":
                torch.cuda.synchronize()
            times[name] = (time.perf_counter() - start) / 5
    return device, times
