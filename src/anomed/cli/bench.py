"""`anomed bench run` and `anomed bench speed`: benchmark grids and speed."""

from __future__ import annotations

import argparse
from pathlib import Path

from anomed.cli.options import subparsers
from anomed.errors import AnomedError


def cmd_bench_speed(args: argparse.Namespace) -> None:
    from anomed.backbone import BackboneConfig
    from anomed.engine.speed import SpeedConfig, run_speed

    cfg = SpeedConfig(
        method=args.method,
        backbone=BackboneConfig(
            model=args.model, pretrained=args.pretrained, image_size=args.image_size
        ),
        device=args.device,
        batch_sizes=tuple(args.batch_sizes),
        precisions=tuple(args.precisions),
        iters=args.iters,
        k=args.k,
        epochs=args.epochs,
        adapt=not args.no_adapt,
        adapt_batch_size=args.adapt_batch_size,
        cache=tuple(c == "on" for c in args.cache),
        compile=args.compile,
        num_workers=args.num_workers,
        profile=args.profile,
        onnx=args.runtime == "onnx",
    )
    report = run_speed(cfg, args.output)
    print(report["summary"])
    for part, ops in report.get("profile", {}).items():
        print(f"{part} top ops: " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in ops[:6]))
    print(f"full report: {Path(args.output) / 'speed.json'}")


def cmd_bench_run(args: argparse.Namespace) -> None:
    from anomed.engine.bench import load_bench_config, run_bench

    datasets = None
    if args.datasets:
        pairs = [d.partition("=") for d in args.datasets]
        if any(not sep for _, sep, _ in pairs):
            raise AnomedError("--datasets takes NAME=ROOT pairs, e.g. busi=../shared/data/busi")
        datasets = {name: root for name, _, root in pairs}
    cfg = load_bench_config(
        args.config,
        {
            "methods": args.methods,
            "datasets": datasets,
            "ks": args.ks,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "image_size": args.image_size,
            "model": args.model,
            "pretrained": args.pretrained,
            "preset": args.preset,
            "batch_size": args.batch_size,
            "abnormal_from_test": args.abnormal_from_test,
            "output": args.output,
        },
    )
    out = run_bench(cfg, progress=not args.quiet)
    from anomed.viz.report import write_report

    report = write_report(out)
    print((out / "tables.md").read_text().rstrip())
    print(f"results.csv, tables.md, plots/ and {report.name} in {out}")


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add `bench` with its run and speed tools."""
    p = sub.add_parser("bench", help="benchmarks")
    bench_sub = subparsers(p, "bench_command", "BENCH")
    p = bench_sub.add_parser(
        "run",
        help="a grid of methods x datasets x k x seeds (resumable), "
        "with paper-style tables, plots and an HTML report",
    )
    p.add_argument("--config", help="grid YAML (keys of anomed.engine.bench.BenchConfig)")
    p.add_argument("--methods", nargs="+")
    p.add_argument("--datasets", nargs="+", metavar="NAME=ROOT")
    p.add_argument("--ks", type=int, nargs="+")
    p.add_argument("--seeds", type=int, nargs="+")
    p.add_argument("--epochs", type=int, help="override every method's epochs (labelled)")
    p.add_argument("--image-size", type=int)
    p.add_argument("--model")
    p.add_argument("--pretrained")
    p.add_argument("--preset", choices=["anomed", "reference", "paper"])
    p.add_argument("--batch-size", type=int, help="override every method's batch size")
    p.add_argument(
        "--abnormal-from-test",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="supervised methods on normal-only pools: move seeded abnormal test images into "
        "the pool for their shots (default on). Their test sets shrink: results.csv gives "
        "n_test and the protocol per row, and the tables say so",
    )
    p.add_argument("--output", "-o")
    p.set_defaults(func=cmd_bench_run)

    p = bench_sub.add_parser("speed", help="throughput, latency, adaptation time, peak memory")
    p.add_argument("--method", default="mediclip")
    p.add_argument("--model", default="anomed-tiny")
    p.add_argument("--pretrained")
    p.add_argument("--image-size", type=int)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    p.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    p.add_argument("--iters", type=int, default=5, help="timed iterations per setting")
    p.add_argument("--k", type=int, default=16, help="shots for the adaptation timing")
    p.add_argument("--epochs", type=int, help="adaptation epochs (default: the method's)")
    p.add_argument("--no-adapt", action="store_true", help="skip the adaptation timing")
    p.add_argument(
        "--adapt-batch-size",
        type=int,
        help="adaptation batch (default: the method's; 1 = reference loops)",
    )
    p.add_argument(
        "--cache",
        nargs="+",
        choices=["on", "off"],
        default=["on", "off"],
        help="feature cache settings to time (side-adapter methods)",
    )
    p.add_argument("--compile", action="store_true", help="torch.compile the frozen blocks")
    p.add_argument("--num-workers", type=int, default=0, help="data-loading workers")
    p.add_argument(
        "--profile", action="store_true", help="add the top operators of inference and training"
    )
    p.add_argument(
        "--runtime",
        choices=["torch", "onnx"],
        default="torch",
        help="onnx: also time the exported ONNX graph under onnxruntime, beside PyTorch",
    )
    p.add_argument("--output", "-o", default="runs/bench/speed", help="folder for speed.json")
    p.set_defaults(func=cmd_bench_speed)
