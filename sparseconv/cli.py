"""The ``sparseconv`` command line (``python -m sparseconv`` does the same)."""

import argparse
import sys

import sparseconv


def _print_environment(env):
    print(f"\nCPU: {env['processor']}; kernel paths for ISA level {env['isa_level']}, compiled for "
          f"{env.get('compiled_for', '?')} (`sparseconv info` lists them)")
    print(f"threads: numba {env['numba_threads']} ({env['numba_threading_layer']}), "
          f"torch {env.get('torch_threads', '-')}; GEMM inside the kernels: {env['gemm_backend']}; BLAS seen: "
          + ", ".join(f"{b['internal_api']} {b['version']} x{b['num_threads']}" for b in env["blas"]))


def _write_json(args, result):
    from ._table import write_json

    if args.json:
        result = dict(result, command=" ".join(["sparseconv"] + args.argv))
        write_json(args.json, result)
        print(f"\nwrote {args.json}")


def _bench_conv(args):
    from .bench.conv import LAYERS, bench_conv, table
    from ._table import format_table

    if args.network:
        return _bench_network(args)
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
          "ratio cl / ORT = sparseconv / torch channels_last / ONNX Runtime; ratio 2rt = two-runtime pipeline / "
          "sparseconv;\n% GEMM rate = sparseconv's rate / the GEMM rate above\n")
    print(format_table(*table(result["records"], result["gemm_gflops"])))
    _write_json(args, result)
    return 0


def _bench_network(args):
    from ._table import format_table

    try:
        from .bench.network import bench_network, network_table
        import torch  # noqa: F401  (the layers are found by running the network in torch)
    except ImportError as exc:
        raise SystemExit(f"sparseconv bench conv --network: {exc}; pip install 'sparseconv[torch]'") from exc
    if args.layers:
        raise SystemExit("sparseconv bench conv: --layers picks from the fixed set; --network times every layer")
    batches = tuple(args.batch) if args.batch else None
    results = [bench_network(name, quick=args.quick, batches=batches, repeat=args.repeat) for name in args.network]
    _print_environment(results[0]["environment"])
    print("times are medians; ratio = sparseconv / the peer (lower is better); count = layers of that geometry\n")
    for result in results:
        headers, rows, totals = network_table(result)
        print(f"{result['network']}:")
        print(format_table(headers, rows))
        for n, tot in totals.items():
            print(f"  total conv time at N={n}: sparseconv {tot['sparseconv'] * 1e3:.2f} ms, torch "
                  f"{tot['torch'] * 1e3:.2f} ms ({tot['sparseconv'] / tot['torch']:.2f}x), ONNX Runtime "
                  f"{tot['onnxruntime'] * 1e3:.2f} ms ({tot['sparseconv'] / tot['onnxruntime']:.2f}x)")
        print()
    _write_json(args, results[0] if len(results) == 1 else {"networks": results})
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

    result = bench_torch(quick=args.quick, repeat=args.repeat, devices=args.devices, compile=args.compile)
    _print_environment(result["environment"])
    print(f"CUDA device: {result['environment']['cuda_device'] or 'none'}; Triton: "
          f"{result['environment']['triton'] or 'not installed'}")
    print("times are medians; realised = speedup over the dense NCHW conv / MAC reduction; vs composed = the "
          "composed module's time / this variant's\n")
    print_table(result)
    _write_json(args, result)
    for w in result["wrong"]:
        print(f"WRONG, not timed: {w['module']} {w['variant']} on {w['device']} ({w['layer']}, N={w['N']}) differs "
              f"from its reference by {w['relative_error']:.2g} of the output's largest magnitude")
    return 1 if result["wrong"] else 0


def _info(args):
    import json

    from . import system

    try:
        info = system.info()
    except ValueError as exc:  # a bad SPARSECONV_ISA
        raise SystemExit(f"sparseconv info: {exc}") from exc
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    have = ", ".join(f for f, present in info["features"].items() if present) or "none of them"
    lacks = ", ".join(f for f, present in info["features"].items() if not present) or "none"
    override = f"forced by SPARSECONV_ISA={info['isa_override']}" if info["isa_override"] else \
        ("SPARSECONV_ISA=avxvnni, avx2 or portable forces a lower one; "
         "`sparseconv bench ... --isa avx2` also compiles for it")
    lines = [f"CPU: {info['cpu']} ({info['machine']}, {info['cpu_count']} logical cores)",
             f"features: {have}; lacks {lacks}",
             f"ISA level: {info['isa_level']} ({override}); numba compiles for {info['compiled_for']}",
             f"GEMM inside the kernels: {info['gemm_backend']} ({info['gemm_reason']}); "
             f"numba threads: {info['numba_threads']}",
             "kernel paths:",
             f"  int8 x int8 -> int32 (quantize(w, 8, activations=8)): {info['int8_kernel']}; weights or "
             f"activations of at most 7 bits: {info['int8_kernel_7bit']}",
             f"  XNOR popcount (binarize(..., activations='binary')): {info['xnor_popcount']}",
             f"  float register tile (IGCV1 primary groups of at most 16 channels): {info['float_tile']}",
             "  dense, grouped and depthwise conv2d: numba kernels with the GEMM above",
             "  default method of operators that have several (op.methods lists the others):"]
    lines += [f"    {name}: {method}" for name, method in info["methods"].items()]
    lines.append(f"kernel cache: {info['kernel_cache']}")
    print("\n".join(lines))
    return 0


def _train_default(args):
    from .study.network import WEIGHTS, train_default

    out = args.out or WEIGHTS
    acc = train_default(out=out, seed=args.seed, epochs=args.epochs)
    print(f"wrote {out}; test accuracy {acc:.4f} on the 1,000 test digits")
    return 0


def _pair_arg(text):
    """'2' -> 2, '1,2' -> (1, 2): an int or a pair of ints, as conv2d takes them."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an int or two ints separated by a comma, got {text!r}") from None
    if len(values) not in (1, 2):
        raise argparse.ArgumentTypeError(f"expected an int or two ints separated by a comma, got {text!r}")
    return values[0] if len(values) == 1 else values


def _padding_arg(text):
    return text if text in ("same", "valid") else _pair_arg(text)


def _compare(args):
    import numpy as np

    from .study import compare as cmp
    from .study.report import summary, write_outputs

    if args.onnx or (args.torch and ":" not in args.torch):
        return _compare_model(args)
    weight = inputs = None
    geometry = {k: getattr(args, k) for k in ("stride", "padding", "dilation", "groups")
                if getattr(args, k) is not None}
    try:
        if args.layers or args.max_error is not None:
            raise ValueError("--layers and --max-error are for a whole network (--onnx, or --torch MODEL.pt)")
        if args.weights or args.torch:
            weight, own = cmp.load_layer(args.weights or args.torch, geometry=True)
            if own and geometry:
                raise ValueError(f"--{', --'.join(geometry)}: a torch conv's geometry is read from the module")
            geometry = own or geometry
        elif geometry:
            raise ValueError(f"--{', --'.join(geometry)} describe a layer of your own (--weights); the default layer "
                             f"has its own geometry")
        if args.inputs:
            inputs = np.load(args.inputs, allow_pickle=False)
        records = cmp.compare(weight, inputs, quick=args.quick, finetune=args.finetune, families=args.families,
                              **geometry)
    except (ValueError, ImportError) as exc:
        raise SystemExit(f"sparseconv compare: {exc}") from exc
    print(summary(records))
    if args.out:
        for path in write_outputs(records, args.out, quick=args.quick):
            print(f"wrote {path}")
    return 0


def _compare_model(args):
    """``compare --onnx MODEL.onnx[:NODE]`` or ``compare --torch MODEL.pt``: every conv layer of a network."""
    import pathlib

    import numpy as np

    from .study import compare as cmp
    from .study.model import compare_model
    from .study.report import model_summary, write_model_outputs

    max_error = 0.01 if args.max_error is None else args.max_error
    try:
        given = [f"--{k}" for k in ("stride", "padding", "dilation", "groups") if getattr(args, k) is not None]
        given += ["--weights"] * bool(args.weights) + ["--finetune"] * args.finetune
        given += ["--torch"] * bool(args.onnx and args.torch)
        if given:
            raise ValueError(f"{', '.join(given)}: not with a whole network (each layer's geometry is read from it)")
        if not args.inputs:
            raise ValueError("a whole network needs its inputs: --inputs images.npy, (N, C, H, W) as the model takes")
        if not 0 < max_error:
            raise ValueError(f"--max-error must be > 0, got {max_error}")
        layers = args.layers
        if args.onnx:
            path, sep, node = args.onnx.partition(".onnx:")
            model = path + ".onnx" if sep else args.onnx
            if sep:
                if layers:
                    raise ValueError("name one node (MODEL.onnx:NODE) or give --layers, not both")
                layers = [node]
            if not pathlib.Path(model).is_file():
                raise ValueError(f"model file {model!r} does not exist")
        else:
            print(f"loading {args.torch} with torch.load(weights_only=False): this runs code from the file, so only "
                  f"use files you trust", file=sys.stderr)
            model = cmp.load_model(args.torch)
        inputs = np.load(args.inputs, allow_pickle=False)
        result = compare_model(model, inputs, layers=layers, quick=args.quick, families=args.families,
                               max_minutes=args.max_minutes)
    except (ValueError, TypeError, ImportError) as exc:
        raise SystemExit(f"sparseconv compare: {exc}") from exc
    print(model_summary(result, max_error))
    if args.out:
        for path in write_model_outputs(result, args.out, max_error):
            print(f"wrote {path}")
    return 0


def _study(args):
    import json
    import pathlib

    from .study.budget import equal_budget, study_table

    try:
        result = equal_budget(quick=args.quick, seeds=args.seeds, epochs=args.epochs)
    except ImportError as exc:
        raise SystemExit(f"sparseconv study: {exc}") from exc
    print(f"{result['epochs']} epoch(s) on {result['train_images']} training digits, test error on "
          f"{result['test_images']}")
    print(study_table(result))
    if args.out:
        from .study.figures import study_figure

        out = pathlib.Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "study.json").write_text(json.dumps(result, indent=2))
        for path in [out / "study.json"] + study_figure(result["rows"], out):
            print(f"wrote {path}")
    return 0


def _figures(args):
    from .study.figures import all_figures

    try:
        paths = all_figures(args.out, quick=args.quick, compare_json=args.compare_json, study_json=args.study_json)
    except ImportError as exc:
        raise SystemExit(f"sparseconv figures: {exc}") from exc
    for path in paths:
        print(f"wrote {path}")
    return 0


def _bench_command(bench_sub, name, help, description, quick_help, func):
    """A ``sparseconv bench NAME`` subcommand with the options every benchmark has."""
    p = bench_sub.add_parser(name, help=help, description=description)
    p.add_argument("--quick", action="store_true", help=quick_help)
    p.add_argument("--repeat", type=int, help="samples per contender")
    p.add_argument("--json", metavar="PATH", help="also write every measurement to this JSON file")
    p.add_argument("--isa", choices=["portable", "avx2", "avxvnni"],
                   help="run in a new process that compiles the kernels for this lower level and runs the peers "
                        "(OpenBLAS, MKL, torch) at it too: an AVX-512 machine measuring the paths an AVX2 CPU takes "
                        "(sparseconv.system.emulation_env)")
    p.set_defaults(func=func)
    return p


def _emulated(argv, level):
    """Run this command again, without --isa, in a process that builds and runs the code of ``level``."""
    import os
    import subprocess

    from . import system

    try:
        env = system.emulation_env(level)
    except ValueError as exc:
        raise SystemExit(f"sparseconv bench: --isa {level}: {exc}") from exc
    print(f"emulating an {level} CPU: numba compiles for {env['NUMBA_CPU_NAME']} without the features above "
          f"{level}; OpenBLAS {env['OPENBLAS_CORETYPE']}, MKL {env['MKL_ENABLE_INSTRUCTIONS']}, torch "
          f"{env['ATEN_CPU_CAPABILITY']}", flush=True)
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--isa":
            skip = True
        elif not a.startswith("--isa="):
            rest.append(a)
    return subprocess.run([sys.executable, "-m", "sparseconv", *rest], env={**os.environ, **env}).returncode


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sparseconv",
        description="Efficient convolution as cheaper matrices: run the benchmarks and studies.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    compare = sub.add_parser(
        "compare", help="every compression family at every budget on a real trained layer (the main job)",
        description="Sweep binary, quantized, k-means, low-rank, pruned, block-diagonal and IGC versions of one "
                    "layer over their budgets: storage, MACs, weight and output error on real inputs, accuracy of "
                    "the network with the layer replaced, and the kernels' measured speed against dense conv2d. "
                    "Default layer: conv2 of the shipped digits CNN.")
    compare.add_argument("--quick", action="store_true", help="fewer budgets and images (about a minute)")
    compare.add_argument("--out", metavar="DIR", help="write compare.csv, compare.json and the figures there")
    compare.add_argument("--weights", metavar="FILE[:KEY]", help="a layer of your own: file.npy or file.npz[:key]")
    compare.add_argument("--torch", metavar="MODEL.pt[:MODULE]", help="a saved torch model (unpickled: trusted files "
                                                                       "only): one conv module, or with no :MODULE "
                                                                       "the whole network")
    compare.add_argument("--onnx", metavar="MODEL.onnx[:NODE]", help="every conv of an ONNX network (or one "
                                                                      "node), scored on the network's output too")
    compare.add_argument("--inputs", metavar="FILE.npy", help="inputs of that layer, (N, C_in, H, W); for a whole "
                                                              "network, its inputs (images)")
    compare.add_argument("--layers", nargs="+", metavar="PATTERN", help="whole network: only the layers whose names "
                                                                       "match these globs")
    compare.add_argument("--max-error", type=float, metavar="E", help="whole network: the network output error a "
                                                                      "layer's cheapest point must keep (default 0.01)")
    compare.add_argument("--max-minutes", type=float, default=30.0, metavar="MIN",
                         help="whole network: refuse a sweep estimated to take longer (default 30)")
    compare.add_argument("--stride", type=_pair_arg, metavar="S|SH,SW", help="the layer's stride (default 1)")
    compare.add_argument("--padding", type=_padding_arg, metavar="P|PH,PW|same|valid",
                         help="the layer's zero padding (default: dilation * (k - 1) // 2 per side)")
    compare.add_argument("--dilation", type=_pair_arg, metavar="D|DH,DW", help="the layer's dilation (default 1)")
    compare.add_argument("--groups", type=int, metavar="G", help="the layer's groups; the weight is (C_out, C_in/G, "
                                                                 "kH, kW) (default 1)")
    compare.add_argument("--finetune", action="store_true", help="also fine-tune the replaced layer (torch)")
    compare.add_argument("--families", nargs="+", metavar="FAMILY", choices=sparseconv.registry.names(),
                         help="only these families (the registry's: " + ", ".join(sparseconv.registry.names()) + ")")
    compare.set_defaults(func=_compare)
    study = sub.add_parser("study", help="equal-budget networks (regular, IGCV1/2/3, separable, low rank) on the "
                                         "digits, trained with torch",
                           description="Train, on the embedded digits, networks whose two middle layers are regular "
                                       "convs, IGCV1, IGCV2, IGCV3, depthwise-separable or low-rank, matched at "
                                       "three parameter budgets, over seeds; report test error mean and std.")
    study.add_argument("--quick", action="store_true", help="one budget, one seed, two epochs on half the data (CI)")
    study.add_argument("--seeds", nargs="+", type=int, help="seeds (default 0 1 2)")
    study.add_argument("--epochs", type=int, help="epochs per run (default 3)")
    study.add_argument("--out", metavar="DIR", help="write study.json and params_vs_error.png there")
    study.set_defaults(func=_study)
    figures = sub.add_parser("figures", help="regenerate every figure into figures/",
                             description="Run compare and the study (or read their JSON) and draw every figure: "
                                         "cost vs error, accuracy, speed vs FLOPs, the study, IGC theory, factor "
                                         "structure, the default layer's spectrum.")
    figures.add_argument("--out", default="figures", metavar="DIR", help="where to write (default figures/)")
    figures.add_argument("--quick", action="store_true", help="quick compare and study")
    figures.add_argument("--compare-json", metavar="FILE", help="records from `compare --out` instead of a new run")
    figures.add_argument("--study-json", metavar="FILE", help="rows from `study --out` instead of a new run")
    figures.set_defaults(func=_figures)
    info = sub.add_parser("info", help="the CPU, its features and the kernel path each family takes here",
                          description="Print the CPU, the features the kernels look for, the instruction-set "
                                      "level in force (SPARSECONV_ISA lowers it), the GEMM library, the path "
                                      "each kernel family takes and where compiled kernels are cached.")
    info.add_argument("--json", action="store_true", help="print sparseconv.system.info() as JSON")
    info.set_defaults(func=_info)
    train = sub.add_parser("train-default", help="retrain the shipped digits CNN (torch, about a minute)",
                           description="Train the default network on the 4,000 training digits, seeded, and "
                                       "write its weights (default: the file the package ships).")
    train.add_argument("--out", metavar="FILE.npz", help="where to write (default: the shipped file)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--epochs", type=int, default=15)
    train.set_defaults(func=_train_default)

    bench = sub.add_parser("bench", help="time kernels side by side with their peers",
                           description="Time sparseconv's kernels side by side with their peers, in one run.")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    conv = _bench_command(
        bench_sub, "conv", "dense conv2d vs torch's CPU conv, ONNX Runtime and the machine's GEMM rate",
        "Dense sparseconv.conv2d vs torch.nn.functional.conv2d (NCHW and channels_last), ONNX Runtime's Conv, "
        "the two-runtime im2col + NumPy GEMM pipeline and the GEMM alone, on a fixed layer set; with --network, "
        "on every distinct conv layer of a real network at 224x224, with the network's total conv time.",
        "N=1 only, fewer and shorter samples (default 9 samples, quick 5)", _bench_conv)
    conv.add_argument("--layers", nargs="+", metavar="NAME",
                      help="only these layers, e.g. '256ch 14x14 1x1' (quote each name)")
    conv.add_argument("--batch", nargs="+", type=int, metavar="N", help="batch sizes (default 1 and 8)")
    conv.add_argument("--network", nargs="+", metavar="NAME",
                      choices=["mobilenet_v2", "resnet18", "igcv3_d", "small"],
                      help="time the conv layers of these networks (mobilenet_v2, resnet18, igcv3_d; needs torch, "
                           "and the onnx extra for the ONNX Runtime column) instead of the fixed set; 'small': "
                           "five layers that take torch under 0.1 ms, where per-call overhead weighs most")
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
        "sparseconv.torch's IGCV1Conv2d (L = 2, 4, 8), IGCV2Conv2d, the IGCV3 convolutions and IGCV3Block "
        "against nn.Conv2d (NCHW and channels_last) of the same width on 64ch 56x56 and 256ch 14x14, on the CPU "
        "(float32, N=8) and, where torch sees one, a CUDA device (float32 and bfloat16, N=64 and 256; the "
        "fused Triton kernels too, where Triton is installed).",
        "the 64ch layer only, N=1 on the CPU and 64 on CUDA, fewer samples", _bench_torch)
    torch_bench.add_argument("--devices", nargs="+", choices=["cpu", "cuda"], help="only these devices")
    torch_bench.add_argument("--compile", action="store_true",
                             help="also time each IGC module under torch.compile (inductor)")
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv  # recorded in the JSON files the tools write, beside the numbers
    if getattr(args, "isa", None):
        return _emulated(argv, args.isa)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
