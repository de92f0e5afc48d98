"""The equal-budget study: the IGC claim in miniature, trained on the embedded digits with torch (CPU).

Networks share one layout and differ only in their two middle layers:

    stem: conv 1 -> G, 3x3; BN; ReLU; 2x2 max pool        (28 -> 14)
    layer A: G -> G, 3x3 design; BN; ReLU; 2x2 max pool   (14 -> 7)
    layer B: G -> G, 3x3 design; BN; ReLU                 (7 x 7)
    global average pool; linear G -> 10

Designs: a regular conv; IGCV1 with L = 2, 4 and 8 (M = G / L); IGCV2 with
two 1x1 factors (branch sizes as balanced as G allows); the IGCV3
convolutions (expansion 2, groups (2, 2)); depthwise-separable (depthwise
3x3 + dense 1x1, i.e. IGCV1 with M = 1); low rank (3x3 to G/4 channels,
then 1x1). For each parameter budget (that of the regular network at
G = 25, 31, 39) each design takes the width G whose whole network comes
closest to it (within 5% for all three); the relative gap is reported
(``budget_gap``). Each
(design, budget) trains over several seeds; reported: test error mean and
standard deviation.
"""

import numpy as np

from .._table import format_table

__all__ = ["DESIGNS", "equal_budget"]

DESIGNS = ("regular", "igcv1 L=2", "igcv1 L=4", "igcv1 L=8", "igcv2", "igcv3", "depthwise-separable", "low rank")
#: the budgets: the regular network at these widths (11.9 K, 18.1 K, 28.4 K parameters), chosen because every
#: design has a width within 5% of each (IGCV1 with L = 8 moves in steps of 8 channels; most smaller
#: budgets leave it 6-21% away)
REGULAR_WIDTHS = (25, 31, 39)


def _igcv2_sizes(G):
    k = max(d for d in range(1, int(np.sqrt(G)) + 1) if G % d == 0)
    return (k, G // k)


def _layer(design, G, torch, st):
    import sparseconv as sc

    if design == "regular":
        return torch.nn.Conv2d(G, G, 3, padding=1, bias=False)
    if design.startswith("igcv1"):
        L = int(design.split("=")[1])
        return st.IGCV1Conv2d(G, L, G // L)
    if design == "igcv2":
        return st.IGCV2Conv2d(G, _igcv2_sizes(G))
    if design == "igcv3":
        return st.from_operator(sc.IGCV3.random(G, G, 2, (2, 2)), padding=1).float()
    if design == "depthwise-separable":
        return st.IGCV1Conv2d(G, G, 1)
    if design == "low rank":
        rank = max(1, G // 4)
        w = np.random.default_rng(0).standard_normal((G, G, 3, 3)).astype(np.float32) * np.sqrt(2 / (9 * G))
        return st.from_operator(sc.low_rank(w, rank=rank), padding=1).float()
    raise ValueError(f"design must be one of {list(DESIGNS)}, got {design!r}")


def _valid(design, G):
    if design.startswith("igcv1"):
        return G % int(design.split("=")[1]) == 0 and G > int(design.split("=")[1])
    if design == "igcv3":
        return G % 2 == 0
    if design == "igcv2":
        return _igcv2_sizes(G)[0] > 1
    return True


def build(design, G, torch=None, st=None):
    """The study network of ``design`` at width ``G``."""
    import torch as torch_mod

    import sparseconv.torch as st_mod

    torch, st = torch or torch_mod, st or st_mod
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, G, 3, padding=1, bias=False), nn.BatchNorm2d(G), nn.ReLU(), nn.MaxPool2d(2),
        _layer(design, G, torch, st), nn.BatchNorm2d(G), nn.ReLU(), nn.MaxPool2d(2),
        _layer(design, G, torch, st), nn.BatchNorm2d(G), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(G, 10))


def _params(model):
    return sum(p.numel() for p in model.parameters())


def matched_width(design, budget, widths=range(4, 257)):
    """The width G whose network's parameter count is closest to ``budget``, and that count."""
    import torch

    best = None
    for G in widths:
        if not _valid(design, G):
            continue
        n = _params(build(design, G, torch))
        if best is None or abs(n - budget) < abs(best[1] - budget):
            best = (G, n)
        if n > 2 * budget:
            break
    return best


def _train(model, x, y, epochs, seed, torch):
    """Adam with a one-cycle schedule (peak 1e-2), batches of 64, a seeded order."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-2, total_steps=epochs * -(-len(x) // 64))
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i:i + 64]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            schedule.step()
    model.eval()


def equal_budget(quick=False, seeds=None, epochs=None, designs=None, widths=None, progress=True):
    """Train every design at every budget over the seeds; return {"rows": [...], "runs": [...]}.

    ``rows``: one per (design, budget): design, budget, width, params,
    budget_gap (relative), error_mean, error_std, seeds. ``runs``: every
    training run's test error. Quick mode (CI): one budget, one seed, two
    epochs on 2,000 training images, 500 test images.
    """
    import torch
    from tqdm import tqdm

    from ..datasets import load_digits

    designs = list(designs or DESIGNS)
    seeds = list(seeds or ((0,) if quick else (0, 1, 2)))
    epochs = epochs or (2 if quick else 3)
    widths = list(widths or (REGULAR_WIDTHS[:1] if quick else REGULAR_WIDTHS))
    x, y = load_digits("train")
    xs, ys = load_digits("test")
    if quick:
        x, y, xs, ys = x[::2], y[::2], xs[::2], ys[::2]
    xt, yt, xst = torch.from_numpy(x), torch.from_numpy(y), torch.from_numpy(xs)
    jobs = []
    for width in widths:
        budget = _params(build("regular", width, torch))
        for design in designs:
            G, n = matched_width(design, budget)
            jobs += [(width, budget, design, G, n, seed) for seed in seeds]
    runs = []
    for width, budget, design, G, n, seed in tqdm(jobs, desc="study", disable=not progress):
        torch.manual_seed(seed)
        model = build(design, G, torch)
        _train(model, xt, yt, epochs, seed, torch)
        with torch.no_grad():
            pred = torch.cat([model(xst[i:i + 500]).argmax(1) for i in range(0, len(xst), 500)]).numpy()
        runs.append({"budget": budget, "design": design, "width": G, "params": n, "seed": seed,
                     "error": float(np.mean(pred != ys))})
    rows = []
    for width in widths:
        budget = _params(build("regular", width, torch))
        for design in designs:
            r = [run for run in runs if run["budget"] == budget and run["design"] == design]
            errors = np.array([run["error"] for run in r])
            rows.append({"design": design, "budget": budget, "width": r[0]["width"], "params": r[0]["params"],
                         "budget_gap": (r[0]["params"] - budget) / budget, "error_mean": float(errors.mean()),
                         "error_std": float(errors.std()), "seeds": len(r)})
    return {"rows": rows, "runs": runs, "epochs": epochs, "train_images": len(x), "test_images": len(xs)}


def study_table(result):
    headers = ["budget", "design", "width G", "params", "gap", "test error % (mean ± std)", "seeds"]
    rows = [[f"{r['budget']:,}", r["design"], r["width"], f"{r['params']:,}", f"{100 * r['budget_gap']:+.1f}%",
             f"{100 * r['error_mean']:.2f} ± {100 * r['error_std']:.2f}", r["seeds"]] for r in result["rows"]]
    return format_table(headers, rows)
