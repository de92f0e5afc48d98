"""The ``sparseconv`` command line (``python -m sparseconv`` does the same)."""

import argparse
import sys


def _print_environment(env):
    print(f"\nthreads: numba {env['numba_threads']} ({env['numba_threading_layer']}), "
          f"torch {env.get('torch_threads', '-')}; GEMM inside the kernels: {env['gemm_backend']}; BLAS seen: "
          + ", ".join(f"{b['internal_api']} {b['version']} x{b['num_threads']}" for b in env["blas"]))


def _write_json(args, result):
    from .bench.harness import write_json

    if args.json:
        write_json(args.json, result)
        print(f"\nwrote {args.json}")


def _bench_conv(args):
    from .bench.conv import LAYERS, bench_conv, table
    from .bench.harness import format_table

    names = [name for name, *_ in LAYERS]
    if args.layers:
        unknown = [name for name in args.layers if name not in names]
        if unknown:
            raise SystemExit(f"sparseconv bench conv: unknown layer(s) {unknown}; choose from {names}")
    batches = tuple(args.batch) if args.batch else None
    result = bench_conv(quick=args.quick, layers=args.layers, batches=batches, repeat=args.repeat)
    _print_environment(result["environment"])
    first = [rec["contenders"]["sparseconv"]["first_call_s"] for rec in result["records"]]
    if first:
        print(f"first call of sparseconv.conv2d (numba compiles): {first[0]:.2f} s; later first calls "
              f"on new shapes: {max(first[1:], default=0):.2f} s at most")
    print("times are medians; ratio = sparseconv / torch (lower is better), 'ratio min' the same on best times;\n"
          "ratio 2rt = two-runtime pipeline / sparseconv; % GEMM rate = sparseconv's rate / the GEMM rate above\n")
    print(format_table(*table(result["records"], result["gemm_gflops"])))
    _write_json(args, result)
    return 0


def _bench_sparse(args):
    from .bench.sparse import PARTS, bench_sparse, print_tables

    parts = args.parts or list(PARTS)
    result = bench_sparse(quick=args.quick, parts=parts, repeat=args.repeat)
    _print_environment(result["environment"])
    print("times are medians; 'x scipy' / 'x dense' = their time / sparseconv's; "
          "realised = speedup over dense / FLOP reduction")
    print_tables(result, parts)
    _write_json(args, result)
    return 0


def _bench_igc(args):
    from .bench.igc import bench_igc, print_table

    result = bench_igc(quick=args.quick, repeat=args.repeat)
    _print_environment(result["environment"])
    print("times are medians; realised = speedup over the same library's dense conv / MAC reduction\n")
    print_table(result)
    _write_json(args, result)
    return 0


def _bench_lowp(args):
    from .bench.lowp import bench_lowp, print_table

    result = bench_lowp(quick=args.quick, repeat=args.repeat)
    _print_environment(result["environment"])
    print("times are medians; 'x numpy GEMM' / 'x torch.mm' = the float32 GEMM's time / the contender's "
          "(above 1: faster)\n")
    print_table(result)
    _write_json(args, result)
    return 0


def _bench_torch(args):
    try:
        from .bench.torchpath import bench_torch, print_table
    except ImportError as exc:
        raise SystemExit(f"sparseconv bench torch: {exc}") from exc

    result = bench_torch(quick=args.quick, repeat=args.repeat, devices=args.devices)
    _print_environment(result["environment"])
    print(f"CUDA device: {result['environment']['cuda_device'] or 'none'}")
    print("times are medians; realised = speedup over the dense conv / MAC reduction\n")
    print_table(result)
    _write_json(args, result)
    return 0


def _bench_command(bench_sub, name, help, description, quick_help, func):
    """A ``sparseconv bench NAME`` subcommand with the options every benchmark has."""
    p = bench_sub.add_parser(name, help=help, description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--repeat", type=int, help="samples per contender")
    p.add_argument("--json", metavar="PATH", help="also write every measurement to this JSON file")
    p.set_defaults(func=func)
    return p


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sparseconv",
        description="Efficient convolution as cheaper matrices: run the benchmarks and studies.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    bench = sub.add_parser("bench", help="time kernels side by side with their peers",
                           description="Time sparseconv's kernels side by side with their peers, in one run.")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    conv = _bench_command(
        bench_sub, "conv", "dense conv2d vs torch's CPU conv and the machine's GEMM rate",
        "Dense sparseconv.conv2d vs torch.nn.functional.conv2d (NCHW and channels_last), the two-runtime "
        "im2col + NumPy GEMM pipeline and the GEMM alone, on a fixed layer set.",
        "N=1 only, fewer and shorter samples (default 9 samples, quick 5)", _bench_conv)
    conv.add_argument("--layers", nargs="+", metavar="NAME",
                      help="only these layers, e.g. '256ch 14x14 1x1' (quote each name)")
    conv.add_argument("--batch", nargs="+", type=int, metavar="N", help="batch sizes (default 1 and 8)")
    sparse = _bench_command(
        bench_sub, "sparse", "pruned, group and low-rank weights vs scipy.sparse, dense GEMM and torch",
        "Where fewer FLOPs become less time: sparse kernels vs scipy.sparse and the dense GEMM (256 x 2304 "
        "weight, 3136 columns), group convolutions vs sparseconv's and torch's dense and grouped conv2d, "
        "low-rank factorizations vs the dense conv2d.",
        "fewer cases, N=1 only, fewer samples", _bench_sparse)
    sparse.add_argument("--parts", nargs="+", choices=["csr", "groups", "lowrank"], help="only these parts")
    _bench_command(
        bench_sub, "igc", "IGCV1 at the dense layer's width vs the dense conv and torch's grouped pipeline",
        "IGCV1 (L = 2, 4, 8, 16; M = C / L) on 64ch 56x56 and 256ch 14x14 3x3 layers: sparseconv's IGCV1 "
        "conv2d vs its dense conv2d, torch's grouped conv -> shuffle -> grouped conv pipeline and torch's "
        "dense conv2d.",
        "L = 2 and 8, N=1 only, fewer samples", _bench_igc)
    _bench_command(
        bench_sub, "lowp", "binary, int8 and codebook products vs the float32 GEMM",
        "A 256 x 2304 weight times 196 and 6272 columns: the XNOR-popcount GEMM, binary weights with float "
        "activations, the int8 GEMM (and torch._int_mm as the anchor) and a 16-centroid codebook against "
        "the float32 GEMM of NumPy and torch.mm.",
        "196 columns only, fewer samples", _bench_lowp)
    torch_bench = _bench_command(
        bench_sub, "torch", "the torch IGC modules vs the dense conv of the same width (CPU; CUDA if present)",
        "sparseconv.torch's IGCV1Conv2d (L = 2, 4, 8), IGCV2Conv2d and the IGCV3 convolutions against "
        "nn.Conv2d of the same width on 64ch 56x56 and 256ch 14x14, on the CPU and, where torch sees one, "
        "a CUDA device.",
        "the 64ch layer only, N=1 on the CPU, fewer samples", _bench_torch)
    torch_bench.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], help="only these devices")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
