"""`anomed bench run` and `anomed bench speed`: benchmark grids and speed."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anomed.cli.options import add_tracking_option, subparsers
from anomed.errors import AnomedError, display_text

BENCH_RUNTIMES = ("torch-compile", "onnx", "onnx-int8", "openvino", "openvino-int8")


def _bench_runtimes(names: list[str]) -> tuple[str, ...]:
    """--runtime names -> the runtimes timed beside PyTorch eager (which always runs)."""
    if "all" in names:
        return BENCH_RUNTIMES
    return tuple(n for n in dict.fromkeys(names) if n != "torch")


def cmd_bench_speed(args: argparse.Namespace) -> None:
    from anomed.backbone import BackboneConfig
    from anomed.engine.speed import SpeedConfig, cpu_line, run_speed

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
        runtimes=_bench_runtimes(args.runtime),
    )
    report = run_speed(cfg, args.output)
    print(cpu_line(report["cpu"]) + f"; weights: {report['weights']}")
    print(report["summary"])
    for part, ops in report.get("profile", {}).items():
        print(f"{part} top ops: " + ", ".join(f"{o['op']} {o['share']:.0%}" for o in ops[:6]))
    print(f"full report: {Path(args.output) / 'speed.json'}")


BENCH_FAILED = 3  # exit status of a bench whose grid ran but some cells failed


def cmd_bench_run(args: argparse.Namespace) -> int:
    """Exit 0: every cell finished; 3: the grid ran, some cells failed (rows with status
    'failed' in results.csv, shown in tables.md and report.html); 2: nothing ran (bad input)."""
    from anomed.engine.bench import failures, load_bench_config, run_bench
    from anomed.tracking import open_tracking

    datasets = None
    if args.datasets:
        pairs = [d.partition("=") for d in args.datasets]
        if any(not sep for _, sep, _ in pairs):
            raise AnomedError("--datasets takes NAME=ROOT pairs, e.g. busi=../shared/data/busi")
        datasets = {name: root for name, _, root in pairs}
    keys = ("methods", "ks", "seeds", "epochs", "image_size", "model", "pretrained", "preset")
    keys += ("batch_size", "abnormal_from_test", "output")
    given = {key: getattr(args, key) for key in keys}
    cfg = load_bench_config(args.config, {**given, "datasets": datasets})
    tracking = open_tracking(args.tracking)  # an unwritable store fails here, before any cell
    out = run_bench(cfg, not args.quiet, engine=_engine(args), tracking=tracking, report=True)
    print((out / "tables.md").read_text().rstrip())
    print(f"results.csv, tables.md, plots/ and report.html in {out}")
    failed = failures(out)
    if not failed:
        return 0
    first = failed[0]
    where = f"{first['method']} {first['dataset']} k={first['k']} seed={first['seed']}"
    print(
        f"anomed: {len(failed)} cells failed (status 'failed' in results.csv; listed in "
        f"tables.md and report.html); the first, {where}: {display_text(first['error'])}",
        file=sys.stderr,
    )
    return BENCH_FAILED


def _engine(args: argparse.Namespace):  # noqa: ANN202 (an anomed.engine.bench.Engine or None)
    """None (cells in this process) or the Ray engine with the flags' placement."""
    options = {"address": args.address, "gpus_per_cell": args.gpus_per_cell}
    options |= {"cpus_per_cell": args.cpus_per_cell, "retries": args.retries}
    if args.engine != "ray":
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        if given:
            raise AnomedError(f"{given[0]} places cells on Ray. Fix: add --engine ray.")
        return None
    from anomed.config import from_dict
    from anomed.ray.bench import RayBenchConfig, ray_engine

    ray_cfg = from_dict(RayBenchConfig, {k: v for k, v in options.items() if v is not None})
    return ray_engine(ray_cfg, progress=not args.quiet)


def _add_grid_options(p: argparse.ArgumentParser) -> None:
    """bench run: the engine that runs the cells, and tracking."""
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: cells one after another here (default); ray: each cell a Ray task",
    )
    p.add_argument("--address", help="ray: auto (the cluster on this machine) or ray://HEAD:10001")
    p.add_argument("--gpus-per-cell", type=float, help="ray: GPUs per cell (default 1 if any)")
    p.add_argument("--cpus-per-cell", type=float, help="ray: CPUs per cell (default 1)")
    p.add_argument("--retries", type=int, help="ray: reruns of a cell whose worker died (2)")
    add_tracking_option(p)


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add `bench` with its run and speed tools."""
    p = sub.add_parser("bench", help="benchmarks")
    bench_sub = subparsers(p, "bench_command", "BENCH")
    p = bench_sub.add_parser(
        "run",
        help="a grid of methods x datasets x k x seeds (resumable), "
        "with paper-style tables, plots and an HTML report",
        epilog="exit status: 0 every cell finished; 3 the grid ran but some cells failed "
        "(results.csv rows with status 'failed'); 2 bad input, nothing ran",
    )
    p.add_argument(
        "--grid",
        "--config",
        dest="config",
        help="grid file: YAML with the keys of anomed.engine.bench.BenchConfig (flags win)",
    )
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
    _add_grid_options(p)
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
        nargs="+",
        choices=["torch", *BENCH_RUNTIMES, "all"],
        default=["torch"],
        help="runtimes to time beside PyTorch eager: torch-compile, onnx, onnx-int8, openvino, "
        "openvino-int8, or all (graphs exported from the same method; INT8 for speed only)",
    )
    p.add_argument("--output", "-o", default="runs/bench/speed", help="folder for speed.json")
    p.set_defaults(func=cmd_bench_speed)
