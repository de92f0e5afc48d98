"""``sparseconv bench torch``: the torch IGC modules against the dense conv of the same width, on CPU and CUDA.

For 64ch 56x56 and 256ch 14x14 (3x3, stride 1, same size): the dense
``nn.Conv2d`` (NCHW and channels_last), ``IGCV1Conv2d`` (L = 2, 4, 8),
``IGCV2Conv2d`` (the balanced design with two 1x1 factors), the IGCV3
block's convolutions (expansion 2, groups (2, 2), as a linear module), and
``IGCV3Block`` itself (eval mode: its BN and ReLU6 included). Every IGC
module runs with the composed torch ops; with ``compile=True`` also under
``torch.compile`` (inductor); on CUDA, where Triton is installed, also with
``backend="fused"``. On the CPU: float32, batch 8 (1 in quick mode); on
CUDA: float32 and bfloat16, batch 64 and 256 (64 in quick mode).

Each linear module is first checked against torch's conv2d with its
operator's dense weight, each compiled or fused variant against its composed
twin (in float32): one that differs is reported under "wrong" and not
timed. Then all are timed: warm-up, then ``repeat`` samples of at
least ``min_sample_s`` each, alternating contenders, medians reported (CUDA
timings synchronise the device). "Realised" = (speedup over the dense NCHW
conv) / (MAC reduction); "vs composed" = the composed module's time / this
one's.
"""

import copy

import numpy as np

__all__ = ["LAYERS", "bench_torch", "print_table", "torch_table"]

#: (name, channels, size)
LAYERS = [("64ch 56x56 3x3", 64, 56), ("256ch 14x14 3x3", 256, 14)]


def _modules(c, torch, st):
    """(label, module, linear): the contenders' composed modules, in float32 on the CPU."""
    import sparseconv as sc

    mods = [("dense", torch.nn.Conv2d(c, c, 3, padding=1, bias=False), True)]
    for L in (2, 4, 8):
        mods.append((f"IGCV1 L={L}", st.IGCV1Conv2d(c, L, c // L), True))
    k = int(round(np.sqrt(c)))
    mods.append((f"IGCV2 ({k}, {c // k})", st.IGCV2Conv2d(c, (k, c // k)), True))
    mods.append(("IGCV3 t=2 (2, 2)", st.from_operator(sc.IGCV3.random(c, c, 2, (2, 2)), padding=1), True))
    mods.append(("IGCV3Block t=2 (2, 2)", st.IGCV3Block(c, c, 2, groups=(2, 2)).eval(), False))
    return mods


def _variants(label, module, compile, fused, torch):
    """(variant, module, layout) to time: the composed module, and its channels_last, compiled and fused twins."""
    out = [("composed" if label != "dense" else "NCHW", module, "nchw")]
    if label == "dense":
        out.append(("channels_last", copy.deepcopy(module).to(memory_format=torch.channels_last), "cl"))
    if compile and label != "dense":
        out.append(("compiled", torch.compile(module), "nchw"))
    if fused and hasattr(module, "backend"):
        twin = copy.deepcopy(module)
        twin.backend = "fused"
        out.append(("fused", twin, "nchw"))
    return out


def bench_torch(quick=False, repeat=None, devices=None, compile=False, progress=print):
    """Run the benchmark on each device (default: CPU, and CUDA when available)."""
    import torch
    import torch.nn.functional as F

    import sparseconv.torch as st

    from .harness import _sample, environment

    if devices is None:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        raise ValueError("--devices cuda: torch sees no CUDA device")
    repeat = repeat or (3 if quick else 7)
    records, wrong = [], []
    torch.manual_seed(0)
    for device in devices:
        cuda = device == "cuda"
        sync = torch.cuda.synchronize if cuda else (lambda: None)
        batches = ((64,) if quick else (64, 256)) if cuda else ((1,) if quick else (8,))
        dtypes = (torch.float32, torch.bfloat16) if cuda else (torch.float32,)
        fused = cuda and _triton_version() is not None
        for name, c, hw in (LAYERS[:1] if quick else LAYERS):
            built = _modules(c, torch, st)
            dense_macs = _macs(None, c, hw)
            macs = {label: _macs(st.to_operator(m) if linear else m, c, hw) for label, m, linear in built}
            for n in batches:
                for dtype in dtypes:
                    x = torch.randn(n, c, hw, hw, device=device)
                    entries = []  # (label, variant, module, its input), checked in float32
                    with torch.no_grad():
                        for label, m, linear in built:
                            m.to(device=device, dtype=torch.float32)
                            if linear:
                                w = torch.from_numpy(st.to_operator(m).to_weight()).to(device)
                                expected = F.conv2d(x, w, padding=1)
                            else:
                                expected = m(x)
                            for variant, v, layout in _variants(label, m, compile, fused, torch):
                                xv = x.contiguous(memory_format=torch.channels_last) if layout == "cl" else x
                                err = float((v(xv) - expected).abs().max() / expected.abs().max())
                                if err > (5e-3 if cuda else 1e-4):  # TF32 on CUDA, as cuDNN's convs by default
                                    # reported and left untimed, so that one wrong variant costs no other's numbers
                                    progress(f"WRONG: {label} {variant} on {device} differs by {err:.2g}")
                                    wrong.append({"device": device, "layer": name, "N": n, "module": label,
                                                  "variant": variant, "relative_error": err})
                                    continue
                                entries.append((label, variant, v, xv))
                        entries = [(label, variant, v.to(dtype), xv.to(dtype)) for label, variant, v, xv in entries]
                        for _, _, vm, xv in entries:
                            for _ in range(3):
                                vm(xv)
                        sync()
                        samples = {(label, variant): [] for label, variant, _, _ in entries}
                        for _ in range(repeat):  # alternate the contenders
                            for label, variant, vm, xv in entries:
                                samples[label, variant].append(
                                    _sample(lambda: (vm(xv), sync()), 0.02 if quick else 0.05))
                    med = {key: float(np.median(s)) for key, s in samples.items()}
                    dense_s = med["dense", "NCHW"]
                    for (label, variant), t in med.items():
                        rec = {"device": device, "dtype": str(dtype).replace("torch.", ""), "layer": name, "N": n,
                               "module": label, "variant": variant, "median_s": t,
                               "mac_reduction": dense_macs / macs[label], "speedup": dense_s / t}
                        rec["realised"] = rec["speedup"] / rec["mac_reduction"]
                        composed = med.get((label, "composed"))
                        rec["vs_composed"] = composed / t if composed and variant != "composed" else None
                        records.append(rec)
                    progress(f"torch {device} {rec['dtype']} {name} N={n}: "
                             + ", ".join(f"{k[0]} {k[1]} {v * 1e3:.2f} ms" for k, v in med.items()))
    env = environment()
    env["cuda_device"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    env["triton"] = _triton_version()
    return {"environment": env, "records": records, "wrong": wrong}


def _triton_version():
    try:
        import triton
    except ImportError:
        return None
    return triton.__version__


def _macs(op, c, hw):
    """MACs of the 3x3 'same' conv a module runs on one (c, hw, hw) image, times N by the caller's ratio.

    ``op``: an operator, None (the dense C -> C layer), or an IGCV3Block (the
    MACs of its convolutions, BN and ReLU6 not counted).
    """
    import sparseconv

    shape = (1, c, hw, hw)
    if op is None:
        op = np.zeros((c, c, 3, 3), np.float32)
    elif not isinstance(op, (sparseconv.WeightOperator, sparseconv.NonlinearWeight)):
        op = op.to_operator()
    return sparseconv.conv_cost(op, shape, padding=1).macs


def torch_table(records):
    """(headers, rows) of the records, as the CLI prints them and the docs show them."""
    headers = ["device", "dtype", "layer", "N", "module", "variant", "ms", "MAC reduction", "speedup vs dense",
               "realised", "vs composed"]
    rows = [[r["device"], r["dtype"], r["layer"], r["N"], r["module"], r["variant"], f"{r['median_s'] * 1e3:.3f}",
             f"{r['mac_reduction']:.1f}", f"{r['speedup']:.2f}", f"{r['realised']:.2f}",
             "-" if r["vs_composed"] is None else f"{r['vs_composed']:.2f}"] for r in records]
    return headers, rows


def print_table(result, echo=print):
    from .._table import format_table

    echo(format_table(*torch_table(result["records"])))
