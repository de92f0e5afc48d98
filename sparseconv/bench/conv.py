"""``sparseconv bench conv``: dense conv2d against torch's CPU conv and the machine's GEMM rate.

For every layer of a fixed set it times, side by side in one run:

- ``sparseconv``: :func:`sparseconv.conv2d` (NCHW), numba threads + single-threaded BLAS;
- ``two runtimes``: numba's parallel :func:`sparseconv.im2col`, then NumPy's
  multi-threaded GEMM on the whole column matrix (what the threading policy
  avoids: the two thread pools compete for the cores);
- ``torch``: ``torch.nn.functional.conv2d`` on NCHW tensors, and
  ``torch cl`` on channels_last tensors, the next bar (when torch is installed);
- ``onnxruntime``: a one-node ONNX Conv model in ONNX Runtime (MLAS), what
  CPU models are deployed with, on as many threads as numba's (when the
  ``onnx`` extra is installed);
- ``gemm``: the GEMM alone, W @ cols on a prebuilt column matrix (NumPy),
  the ceiling an im2col method can reach on this shape.

and, once, the machine's float32 GEMM rate on a large square product.
"""

import numpy as np

import sparseconv

from .harness import Contender, environment, run

__all__ = ["LAYERS", "bench_conv", "gemm_rate", "ort_conv"]

#: (name, C, H=W, k): C -> C channels, k x k kernel, stride 1, 'same' padding
LAYERS = [
    ("64ch 56x56 3x3", 64, 56, 3),
    ("256ch 14x14 3x3", 256, 14, 3),
    ("256ch 14x14 1x1", 256, 14, 1),
    ("512ch 7x7 3x3", 512, 7, 3),
]
BATCHES = (1, 8)


def gemm_rate(size=2048, repeat=5):
    """Measured float32 GEMM GFLOP/s of NumPy's BLAS (and torch.mm where installed), all threads."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    ref = a @ b
    contenders = [Contender("numpy", lambda: a @ b, "openblas")]
    try:
        import torch

        at, bt = torch.from_numpy(a), torch.from_numpy(b)
        contenders.append(Contender("torch", lambda: (at @ bt).numpy(), "torch"))
    except ImportError:
        pass
    results = run(contenders, ref, repeat=repeat, min_sample_s=0.1)
    flops = 2.0 * size**3
    return {r.name: flops / r.median_s / 1e9 for r in results if r.ok}


def _contenders(x, w, pad):
    n, c_out = x.shape[0], w.shape[0]
    w2 = w.reshape(c_out, -1)  # (C_out, C_in*kH*kW)
    h_out, w_out = sparseconv.conv_output_shape(x.shape, w.shape[2:], padding=pad)
    cols = sparseconv.im2col(x, w.shape[2:], padding=pad)  # (C_in*kH*kW, N*H_out*W_out)

    def nchw(y):  # (C_out, N*H_out*W_out) -> (N, C_out, H_out, W_out)
        return y.reshape(c_out, n, h_out, w_out).transpose(1, 0, 2, 3)

    out = [
        Contender("sparseconv", lambda: sparseconv.conv2d(x, w, padding=pad), "numba"),
        Contender("two runtimes", lambda: nchw(w2 @ sparseconv.im2col(x, w.shape[2:], padding=pad)),
                  "numba+openblas"),
        Contender("gemm", lambda: nchw(w2 @ cols), "openblas"),
    ]
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        return out
    xt, wt = torch.from_numpy(x), torch.from_numpy(w)
    xcl = xt.contiguous(memory_format=torch.channels_last)
    wcl = wt.contiguous(memory_format=torch.channels_last)
    out.append(Contender("torch", lambda: F.conv2d(xt, wt, padding=pad).numpy(), "torch"))
    out.append(Contender("torch cl", lambda: F.conv2d(xcl, wcl, padding=pad).numpy(), "torch"))
    return out + _ort_contender(x, w, padding=pad)


def ort_conv(x, w, stride=1, padding=0, dilation=1, groups=1):
    """A function running ``Conv`` of ONNX Runtime on ``x`` (N, C_in, H, W) with weight ``w`` (an initializer),
    or None where onnx/onnxruntime are not installed.

    One session on as many intra-op threads as numba uses, its default
    (spinning) thread pool; the harness pauses after it as after OpenBLAS.
    """
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper, numpy_helper
    except ImportError:
        return None
    import numba

    n, c_in, h, wd = x.shape
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[stride] * 2, pads=[padding] * 4,
                            dilations=[dilation] * 2, group=groups)
    graph = helper.make_graph([node], "conv", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[numpy_helper.from_array(np.ascontiguousarray(w, np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = min(model.ir_version, 9)  # what this onnxruntime reads
    so = ort.SessionOptions()
    so.intra_op_num_threads = numba.get_num_threads()
    so.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    xf = np.ascontiguousarray(x, np.float32)
    del onnx  # imported to fail early, with the ImportError, where only onnxruntime is installed
    return lambda: session.run(None, {"x": xf})[0]


def _ort_contender(x, w, **geometry):
    fn = ort_conv(x, w, **geometry)
    return [] if fn is None else [Contender("onnxruntime", fn, "onnxruntime")]


def bench_conv(quick=False, layers=None, batches=None, repeat=None, progress=print):
    """Run the benchmark; return a dict with the environment, the GEMM rate and one record per layer."""
    chosen = [layer for layer in LAYERS if layers is None or layer[0] in layers]
    batches = batches or ((1,) if quick else BATCHES)
    repeat = repeat or (5 if quick else 9)
    rng = np.random.default_rng(0)
    peak = gemm_rate(1024 if quick else 2048, repeat=3 if quick else 5)
    progress("float32 GEMM rate: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in peak.items()))
    records = []
    for name, c, hw, k in chosen:
        for n in batches:
            x = rng.standard_normal((n, c, hw, hw), dtype=np.float32)
            w = (rng.standard_normal((c, c, k, k), dtype=np.float32) / np.sqrt(c * k * k)).astype(np.float32)
            pad = k // 2
            ref = _reference(x, w, pad)
            results = run(_contenders(x, w, pad), ref, repeat=repeat, min_sample_s=0.03 if quick else 0.05)
            flops = sparseconv.conv_cost(w, x.shape, padding=pad).flops
            rec = {"layer": name, "N": n, "C": c, "H": hw, "k": k, "flops": flops,
                   "contenders": {r.name: r.as_dict() for r in results}}
            records.append(rec)
            progress(_progress_line(rec))
    return {"environment": environment(), "gemm_gflops": peak, "records": records}


def _reference(x, w, pad):
    """float64 reference via one NumPy GEMM on the im2col matrix of the float64 input."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)
    n, c_out = x.shape[0], w.shape[0]
    h_out, w_out = sparseconv.conv_output_shape(x.shape, w.shape[2:], padding=pad)
    y = w64.reshape(c_out, -1) @ sparseconv.reference.im2col(x64, w.shape[2:], padding=pad)
    return y.reshape(c_out, n, h_out, w_out).transpose(1, 0, 2, 3)


def _progress_line(rec):
    parts = [f"{rec['layer']} N={rec['N']}:"]
    for name, c in rec["contenders"].items():
        parts.append(f"{name} {c['median_s'] * 1e3:.2f} ms" if c["ok"] else f"{name} WRONG (error {c['error']:.2g})")
    return " ".join(parts)


def table(records, peak):
    """(headers, rows) of the printed summary: medians in ms, rates, and the ratios the issue asks for."""
    best_gemm = max(peak.values()) if peak else float("nan")
    headers = ["layer", "N", "sparseconv ms", "GFLOP/s", "% GEMM rate", "torch ms", "ratio", "ratio min",
               "torch cl ms", "ratio cl", "ORT ms", "ratio ORT", "2 runtimes ms", "ratio 2rt", "gemm-only GFLOP/s"]
    rows = []
    for rec in records:
        cs = rec["contenders"]

        def stat(name, key="median_s"):
            c = cs.get(name)
            return c[key] if c and c["ok"] else float("nan")

        sc = stat("sparseconv")
        rate = rec["flops"] / sc / 1e9
        rows.append([
            rec["layer"], rec["N"], f"{sc * 1e3:.2f}", f"{rate:.0f}", f"{100 * rate / best_gemm:.0f}%",
            f"{stat('torch') * 1e3:.2f}", f"{sc / stat('torch'):.2f}",
            f"{stat('sparseconv', 'min_s') / stat('torch', 'min_s'):.2f}",
            f"{stat('torch cl') * 1e3:.2f}", f"{sc / stat('torch cl'):.2f}",
            f"{stat('onnxruntime') * 1e3:.2f}", f"{sc / stat('onnxruntime'):.2f}",
            f"{stat('two runtimes') * 1e3:.2f}", f"{stat('two runtimes') / sc:.2f}",
            f"{rec['flops'] / stat('gemm') / 1e9:.0f}",
        ])
    return headers, rows
