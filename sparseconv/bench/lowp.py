"""``sparseconv bench lowp``: binary, integer and codebook products against the float32 GEMM.

A 256 x 2304 weight (256 channels, 3x3) times 196 and 6272 im2col columns
(N = 1 and N = 32 at 14x14), side by side in one run (see :mod:`.harness`):

- the float32 GEMM: NumPy (OpenBLAS) and ``torch.mm``, the peers;
- XNOR-popcount: the kernel alone on packed signs, and with the packing of
  the float columns (what ``activations="binary"`` does per call);
- binary weights, float activations: as run by default (decoded once to
  floats, then the GEMM) and by the add-only kernel (additions and
  subtractions only);
- 4-bit weights, float activations, decoded once (the default);
- int8 x int8 -> int32: the kernel alone on quantized operands (the path
  the CPU takes: VNNI, AVX2's vpmaddwd on int16, or the portable loop), and
  with the quantization of the float columns; where the path for 7-bit
  activations differs (AVX2's vpmaddubsw), that one too; ``torch._int_mm``
  as the anchor where torch has it;
- a 16-centroid codebook: decoded once (the default), and the
  accumulate-then-multiply kernel (bins, then 16 multiplications per output);
- the convolution these columns come from (256 channels, 3x3, padding 1, on
  N images of 14x14): ``conv2d`` with the float weight, and with the binary
  weight on binary activations by each of its methods (``packed-taps``
  packs x's signs once per pixel, ``im2col`` packs float columns).

Each contender is checked against its own exact or float64 reference
before it is timed. Ratios: float32 GEMM time / contender time (above 1 is
faster than the GEMM).
"""

import copy

import numpy as np

import sparseconv

from .._table import format_table
from .harness import Contender, environment, run

__all__ = ["COLUMNS", "bench_lowp", "lowp_table"]

#: (name, columns): N = 1 and N = 32 at 14x14
COLUMNS = [("N=1 (196 cols)", 196), ("N=32 (6272 cols)", 6272)]
C_OUT, K = 256, 2304


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _contenders(w, x, torch):
    c_out, k = w.shape
    n = x.shape[1]
    weight = w.reshape(c_out, 256, 3, 3)
    dense = w.astype(np.float64) @ x.astype(np.float64)
    out = [Contender("float32 GEMM (numpy)", lambda: w @ x, "openblas", reference=dense)]
    if torch is not None:
        wt, xt = torch.from_numpy(w), torch.from_numpy(x)
        out.append(Contender("float32 GEMM (torch.mm)", lambda: torch.mm(wt, xt).numpy(), "torch", reference=dense))

    binary = sparseconv.binarize(weight, activations="binary", activation_scale=False)
    signs = np.where(x < 0, -1.0, 1.0)
    exact_signs = binary.signs.astype(np.float64) @ signs
    xbits = binary.pack_columns(x)

    def xnor_kernel():
        return binary.xnor_dots(xbits, n)

    popcount = sparseconv.system.info()["xnor_popcount"]
    out += [Contender(f"XNOR-popcount (kernel, {popcount})", xnor_kernel, "numba", tol=0, reference=exact_signs),
            Contender(f"XNOR-popcount + packing ({popcount})", lambda: binary @ x, "numba", tol=1e-6,
                      reference=exact_signs * binary.alpha[:, None])]
    out += _methods("binary weights, float act.", sparseconv.binarize(weight), x)
    out += _methods("4-bit weights, float act.", sparseconv.quantize(weight, 4), x)

    quant = sparseconv.quantize(weight, 8, activations=8).calibrate(x)
    xq, s = quant.quantize_columns(x)
    exact_int = quant.codes @ xq.astype(np.int64)
    out += _int8("int8", quant, x)
    narrow = sparseconv.quantize(weight, 8, activations=7).calibrate(x)
    if narrow.kernel != quant.kernel:  # AVX2: vpmaddubsw is exact for 7-bit activations
        out += _int8("int8 x 7-bit act.", narrow, x)
    if torch is not None and hasattr(torch, "_int_mm"):
        xq_rows = torch.from_numpy(np.ascontiguousarray(xq.T.astype(np.int8)))  # (n, K)
        wq_cols = torch.from_numpy(np.ascontiguousarray(quant.codes.T.astype(np.int8)))  # (K, C_out)
        try:
            torch._int_mm(xq_rows, wq_cols)
            out.append(Contender("torch._int_mm (anchor)", lambda: torch._int_mm(xq_rows, wq_cols).numpy(), "torch",
                                 tol=0, reference=exact_int.T))
        except RuntimeError:
            pass  # shapes or build it does not support
    out += _methods("codebook k=16", sparseconv.kmeans_quantize(weight, n_clusters=16, per_channel=False), x)
    return out + _convs(weight, n // 196)


def _convs(weight, n_img):
    """conv2d of n_img random 14x14 images by the float weight and by its binary form on binary
    activations (each method), against float64 references from im2col columns (for the binary layer: the
    product of the signs, scaled by alpha and XNOR-Net's K)."""
    x = np.random.default_rng(1).standard_normal((n_img, 256, 14, 14), dtype=np.float32)
    cols = sparseconv.im2col(x.astype(np.float64), 3, padding=1)  # (2304, N*196), image-major columns

    def as_output(y):  # (C_out, N*196) -> (N, C_out, 14, 14)
        return y.reshape(C_OUT, n_img, 14, 14).transpose(1, 0, 2, 3)

    dense = as_output(weight.reshape(C_OUT, K).astype(np.float64) @ cols)
    out = [Contender("dense conv2d (3x3, float32)", lambda: sparseconv.conv2d(x, weight, padding=1), "numba",
                     reference=dense)]
    scaled = sparseconv.binarize(weight, activations="binary")
    signs = as_output((scaled.signs.astype(np.float64) @ np.where(cols < 0, -1.0, 1.0))
                      * scaled.alpha.astype(np.float64)[:, None] * np.abs(cols).mean(axis=0))
    for method in scaled.methods:
        each = copy.copy(scaled)
        each.method = method
        label = f"binary act. conv2d ({method}{', default' if method == scaled.methods[0] else ''})"
        out.append(Contender(label, lambda each=each: sparseconv.conv2d(x, each, padding=1), "numba", tol=1e-5,
                             reference=signs))
    return out


def _int8(name, quant, x):
    """The integer kernel of ``quant`` on packed columns, and with the quantization of the float columns."""
    xq, s = quant.quantize_columns(x)
    exact = quant.codes @ xq.astype(np.int64)
    packed, _ = quant.pack_columns(x)
    return [Contender(f"{name} GEMM (kernel, {quant.kernel})", lambda: quant.int_dots(packed), "numba", tol=0,
                      reference=exact),
            Contender(f"{name} GEMM + quantizing x ({quant.kernel})", lambda: quant @ x, "numba", tol=1e-6,
                      reference=exact * (quant.scale.astype(np.float64)[:, None] * s))]


def _methods(name, op, x):
    """One contender per method of a weight-only operator ("blocks", which only bounds memory, left out)."""
    reference = op.to_dense().astype(np.float64) @ x
    out = []
    for method in op.methods:
        if method == "blocks":
            continue
        each = copy.copy(op)  # the same stored arrays, its own method
        each.method = method
        label = f"{name} ({method}{', default' if method == op.methods[0] else ''})"
        runtime = "openblas" if method == "decoded" else "numba"  # decoded: NumPy's GEMM on the decoded weight
        out.append(Contender(label, lambda each=each: each @ x, runtime, reference=reference))
    return out


def bench_lowp(quick=False, repeat=None, progress=print):
    """Run the benchmark; return the environment and one record per column count."""
    torch = _torch()
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((C_OUT, K), dtype=np.float32) / 48).astype(np.float32)
    records = []
    for name, n in (COLUMNS[:1] if quick else COLUMNS):
        x = rng.standard_normal((K, n), dtype=np.float32)
        contenders = _contenders(w, x, torch)
        results = run(contenders, None, repeat=repeat or (3 if quick else 7), min_sample_s=0.03)
        med = {r.name: r.median_s for r in results if r.ok}
        errors = {r.name: r.error for r in results if not r.ok}
        records.append({"columns": name, "n": n, "median_s": med, "failed": errors})
        progress(f"lowp {name}: " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in med.items()))
    mults = {"dense": C_OUT * K, "codebook k=16": C_OUT * 16}
    return {"environment": environment(), "records": records, "mults_per_column": mults}


def lowp_table(result):
    headers = ["columns", "contender", "ms", "x numpy GEMM", "x torch.mm"]
    rows = []
    for rec in result["records"]:
        med = rec["median_s"]
        base = med.get("float32 GEMM (numpy)", float("nan"))
        peer = med.get("float32 GEMM (torch.mm)", float("nan"))
        for name, t in med.items():
            rows.append([rec["columns"], name, f"{t * 1e3:.3f}", f"{base / t:.2f}", f"{peer / t:.2f}"])
        for name, err in rec["failed"].items():
            rows.append([rec["columns"], name, f"WRONG (error {err:.2g})", "", ""])
    return headers, rows


def print_table(result, echo=print):
    echo(format_table(*lowp_table(result)))
    m = result["mults_per_column"]
    echo(f"\nmultiplications per column: dense {m['dense']}, codebook k=16 {m['codebook k=16']} "
         f"({m['dense'] / m['codebook k=16']:.0f}x fewer; the additions stay at one per weight)")
    echo("conv2d rows: the 3x3 convolution (256 channels, 14x14, padding 1) whose im2col columns these are")
