"""``sparseconv bench torch``: the torch IGC modules against the dense conv of the same width, on CPU and CUDA.

For 64ch 56x56 and 256ch 14x14 (3x3, stride 1, same size), the dense
``nn.Conv2d`` and ``IGCV1Conv2d`` (L = 2, 4, 8), ``IGCV2Conv2d`` (the
balanced design with two 1x1 factors) and the IGCV3 block's convolutions
(expansion 2, groups (2, 2), as a linear module) of the same width. Each
module is first checked against torch's conv2d with its operator's dense
weight, then timed: warm-up, then ``repeat`` samples of at least
``min_sample_s`` each, alternating contenders, medians reported (CUDA
timings synchronise the device). "Realised" = (speedup over dense) / (MAC
reduction).
"""

import numpy as np

__all__ = ["LAYERS", "bench_torch", "print_table"]

#: (name, channels, size, batch on CPU, batch on CUDA)
LAYERS = [("64ch 56x56 3x3", 64, 56, 8, 64), ("256ch 14x14 3x3", 256, 14, 8, 64)]


def _modules(c, torch, st):
    import sparseconv as sc

    mods = [("dense", torch.nn.Conv2d(c, c, 3, padding=1, bias=False))]
    for L in (2, 4, 8):
        mods.append((f"IGCV1 L={L}", st.IGCV1Conv2d(c, L, c // L)))
    k = int(round(np.sqrt(c)))
    mods.append((f"IGCV2 ({k}, {c // k})", st.IGCV2Conv2d(c, (k, c // k))))
    mods.append(("IGCV3 t=2 (2, 2)", st.from_operator(sc.IGCV3.random(c, c, 2, (2, 2)), padding=1)))
    return mods


def bench_torch(quick=False, repeat=None, devices=None, progress=print):
    """Run the benchmark on each device (default: CPU, and CUDA when available)."""
    import torch
    import torch.nn.functional as F

    import sparseconv.torch as st

    from .harness import _sample, environment

    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    repeat = repeat or (3 if quick else 7)
    records = []
    torch.manual_seed(0)
    for device in devices:
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
        for name, c, hw, n_cpu, n_cuda in (LAYERS[:1] if quick else LAYERS):
            n = n_cuda if device == "cuda" else (1 if quick else n_cpu)
            x = torch.randn(n, c, hw, hw, device=device)
            mods = [(label, m.to(device).eval()) for label, m in _modules(c, torch, st)]
            samples = {}
            with torch.no_grad():
                for label, m in mods:
                    op = st.to_operator(m)
                    expected = F.conv2d(x, torch.from_numpy(op.to_weight()).to(device), padding=1)
                    err = float((m(x) - expected).abs().max() / expected.abs().max())
                    if err > 1e-4:
                        raise RuntimeError(f"{label} on {device} differs from its dense weight by {err:.2g}")
                    for _ in range(3):
                        m(x)
                    sync()
                    samples[label] = []
                for _ in range(repeat):  # alternate the contenders
                    for label, m in mods:
                        samples[label].append(_sample(lambda: (m(x), sync()), 0.02 if quick else 0.05))
            dense_macs = sc_conv_macs(None, c, x)
            med = {label: float(np.median(s)) for label, s in samples.items()}
            for label, m in mods:
                macs = sc_conv_macs(st.to_operator(m), c, x)
                rec = {"device": device, "layer": name, "N": n, "module": label, "median_s": med[label],
                       "mac_reduction": dense_macs / macs, "speedup": med["dense"] / med[label]}
                rec["realised"] = rec["speedup"] / rec["mac_reduction"]
                records.append(rec)
            progress(f"torch {device} {name} N={n}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()))
    env = environment()
    env["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"environment": env, "records": records}


def sc_conv_macs(op, c, x):
    """MACs of the conv the module runs on x (3x3, 'same'): the operator's, or the dense C -> C layer's."""
    import sparseconv

    shape = tuple(x.shape)
    return sparseconv.conv_cost(op if op is not None else np.zeros((c, c, 3, 3), np.float32), shape, padding=1).macs


def print_table(result, echo=print):
    from .._table import format_table

    headers = ["device", "layer", "N", "module", "ms", "MAC reduction", "speedup vs dense", "realised"]
    rows = [[r["device"], r["layer"], r["N"], r["module"], f"{r['median_s'] * 1e3:.3f}", f"{r['mac_reduction']:.1f}",
             f"{r['speedup']:.2f}", f"{r['realised']:.2f}"] for r in result["records"]]
    echo(format_table(headers, rows))
