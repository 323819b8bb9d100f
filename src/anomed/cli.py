"""The `anomed` command: parse, call the library, print. No logic of its own."""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from anomed.errors import AnomedError, display_text


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML run config (flags and --set override it)")
    p.add_argument("--method", help="method name (see `anomed methods`), default mediclip")
    p.add_argument(
        "--preset",
        choices=["anomed", "reference", "paper"],
        help="whose computation to follow where they differ: anomed (default), the reference "
        "code, or the paper (see FIDELITY.md)",
    )
    p.add_argument("--data", help="dataset root (any layout: see --layout)")
    p.add_argument(
        "--layout",
        help="dataset layout: auto (default: detected), folder, samples-json, bmad, data-json",
    )
    p.add_argument("--class-name", help="organ/class word for the prompts (default: the dataset's)")
    p.add_argument("--k", type=int, help="normal shots (default 16)")
    p.add_argument("--k-abnormal", type=int, help="labelled abnormal shots (supervised methods)")
    p.add_argument("--seed", type=int, help="seeds the shot draw and training (default 0)")
    p.add_argument("--shots-file", help="reuse the shot list of an earlier run (shots.yaml)")
    p.add_argument(
        "--abnormal-from-test",
        action="store_true",
        default=None,
        help="supervised methods on normal-only pools: move seeded abnormal test "
        "images into the pool for shots and validation (they leave the test set)",
    )
    p.add_argument("--model", help="open_clip model name, hf-hub:org/repo or local-dir:/path")
    p.add_argument("--pretrained", help="open_clip tag (e.g. openai) or a local checkpoint file")
    p.add_argument("--image-size", type=int, help="input size; positional embeddings interpolated")
    p.add_argument("--preprocess", help="pixel normalisation preset: clip, paper, cxr")
    p.add_argument("--epochs", type=int, help="training epochs (default: the method's)")
    p.add_argument("--batch-size", type=int, help="batch size (default: the method's)")
    p.add_argument("--device", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument(
        "--select",
        choices=["val", "last", "test-leak"],
        help="model selection: validation split (default), last epoch, or the "
        "papers' habit of picking the epoch on the test set (leaks test labels)",
    )
    p.add_argument(
        "--no-feature-cache",
        dest="cache_features",
        action="store_false",
        default=None,
        help="side-adapter methods: run the backbone on freshly synthesized anomalies every "
        "epoch instead of caching frozen features once (slower; see train.cache_variants)",
    )
    p.add_argument(
        "--compile", action="store_true", default=None, help="torch.compile the frozen blocks"
    )
    p.add_argument(
        "--output", "-o", help="run folder (default runs/<method>-<dataset>-k<k>-s<seed>)"
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace an existing, non-empty run folder"
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any config field, e.g. --set method_args.temperature=0.07",
    )


_FLAG_KEYS = {
    "method": "method",
    "preset": "preset",
    "class_name": "data.class_name",
    "data": "data.root",
    "layout": "data.layout",
    "k": "data.k",
    "k_abnormal": "data.k_abnormal",
    "shots_file": "data.shots_file",
    "abnormal_from_test": "data.carve_abnormal_from_test",
    "train_data": "data.train_roots",
    "model": "backbone.model",
    "pretrained": "backbone.pretrained",
    "image_size": "backbone.image_size",
    "preprocess": "backbone.preprocess",
    "epochs": "train.epochs",
    "batch_size": "train.batch_size",
    "device": "train.device",
    "select": "train.select",
    "cache_features": "train.cache_features",
    "compile": "train.compile",
    "output": "output_dir",
}


def build_run_config(args: argparse.Namespace):
    """Config file, then flags, then --set overrides -> a checked RunConfig (every field and
    method option validated before any data are read)."""
    from anomed.config import RunConfig, apply_overrides, from_dict, load_yaml, set_dotted

    if getattr(args, "output", None) == "":
        raise AnomedError("--output '': an empty path. Fix: name a folder, or leave -o out.")
    data = load_yaml(args.config) if args.config else {}
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag, None)
        if value is not None:
            set_dotted(data, key, value)
    if args.seed is not None:
        set_dotted(data, "data.seed", args.seed)
        set_dotted(data, "train.seed", args.seed)
    cfg = from_dict(RunConfig, apply_overrides(data, args.set))
    from anomed.engine.run import validate_run_config

    return validate_run_config(cfg)


def cmd_train(args: argparse.Namespace) -> None:
    from anomed.engine.run import train_run

    cfg = build_run_config(args)
    art = train_run(cfg, progress=not args.quiet, overwrite=args.overwrite)
    cal = art.info.calibration
    threshold = (
        "no threshold: saved uncalibrated"
        if cal.threshold is None
        else f"threshold {cal.threshold:.4f} at FPR {cal.target_fpr}"
    )
    print(
        f"saved checkpoint to {art.output_dir} (best epoch {art.fit.best_epoch} by "
        f"{art.fit.selected_by}; {threshold})"
    )
    if args.eval:
        _print_eval(*_eval(art.output_dir, None, None, args, overwrite=True))


def _eval(
    checkpoint: Path,
    data: str | None,
    output: str | None,
    args: argparse.Namespace,
    overwrite: bool = False,
):
    from anomed.engine.run import eval_run

    return eval_run(
        checkpoint,
        data,
        output,
        device=args.device or "auto",
        batch_size=getattr(args, "batch_size", None),
        progress=not args.quiet,
        overwrite=overwrite,
    )


def _add_ray_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: this process (default); ray: a Ray cluster, Parquet shards, resumable",
    )
    p.add_argument("--address", help="ray: auto (the cluster on this machine) or ray://HEAD:10001")
    p.add_argument("--workers", type=int, help="ray: model actors (default: one per GPU)")
    p.add_argument("--gpus-per-worker", type=float, help="ray: GPUs per actor (0: CPU actors)")
    p.add_argument("--path-column", help="ray: path column of CSV/Parquet manifests (path)")
    p.add_argument(
        "--maps",
        action="store_true",
        help="ray: write overlay PNGs and anomaly NIfTI maps too (the local engine always does)",
    )
    p.add_argument(
        "--retry-errors", action="store_true", help="ray: on resume, score error rows again"
    )


def _print_eval(result, out: Path) -> None:
    print((out / "metrics.md").read_text().rstrip())
    print(f"reports in {out}: metrics.json, metrics.md, scores.csv, heatmaps.png, roc.png")


def cmd_eval(args: argparse.Namespace) -> None:
    from anomed.engine.run import eval_run

    result = eval_run(
        Path(args.checkpoint),
        args.data,
        args.output,
        device=args.device or "auto",
        batch_size=args.batch_size,
        progress=not args.quiet,
        overwrite=args.overwrite,
        class_name=args.class_name or "",
        num_workers=args.num_workers,
    )
    _print_eval(*result)


def cmd_predict(args: argparse.Namespace) -> int:
    from anomed.engine.predict import predict_run

    if args.engine == "ray":
        if args.runtime != "torch" or args.dicom_out:
            raise AnomedError(
                f"--runtime {args.runtime} and --dicom-out work with the local engine only. "
                "Fix: drop them, or drop --engine ray."
            )
        return cmd_predict_ray(args)
    ray_only = {
        "--address": args.address,
        "--workers": args.workers,
        "--gpus-per-worker": args.gpus_per_worker,
        "--path-column": args.path_column,
        "--maps": args.maps or None,
        "--retry-errors": args.retry_errors or None,
    }
    used = [flag for flag, value in ray_only.items() if value is not None]
    if used:
        raise AnomedError(f"{', '.join(used)}: only with --engine ray. Fix: add --engine ray.")
    report = predict_run(
        args.checkpoint,
        args.inputs,
        args.output,
        device=args.device or "auto",
        batch_size=args.batch_size,
        progress=not args.quiet,
        compile_backbone=args.compile,
        overwrite=args.overwrite,
        runtime=args.runtime,
        dicom_out=args.dicom_out,
    )
    for line in report.summary_lines(per_row=len(report.rows) <= 50):
        print(line)
    if report.n_failed and (args.strict or report.n_failed == len(report.rows)):
        print(f"anomed: {report.n_failed} of {len(report.rows)} inputs failed", file=sys.stderr)
        return 1
    return 0


def cmd_predict_ray(args: argparse.Namespace) -> int:
    from anomed.config import from_dict

    try:
        from anomed.ray import RayPredictConfig, predict_ray
    except ImportError as exc:
        raise AnomedError(
            f"--engine ray needs Ray ({exc}). Fix: pip install 'anomed[ray]'."
        ) from exc
    given = {
        "address": args.address,
        "workers": args.workers,
        "gpus_per_worker": args.gpus_per_worker,
        "batch_size": args.batch_size,
        "maps": args.maps,
        "path_column": args.path_column or "path",
        "retry_errors": args.retry_errors,
        "overwrite": args.overwrite,
        "progress": not args.quiet,
    }
    cfg = from_dict(RayPredictConfig, given)
    report = predict_ray(args.checkpoint, args.inputs, args.output, cfg)
    for line in report.summary_lines():
        print(line)
    written = report.this_run["written"]
    if report.n_failed and (args.strict or report.n_failed == written):
        print(f"anomed: {report.n_failed} of {written} inputs failed", file=sys.stderr)
        return 1
    return 0


def cmd_export(args: argparse.Namespace) -> None:
    from anomed.export.gates import Gates
    from anomed.export.pipeline import export_run

    gates = Gates(args.gate_rank_corr, args.gate_map_cosine, args.gate_auroc_drop)
    report = export_run(
        args.run,
        args.output,
        overwrite=args.overwrite,
        opset=args.opset,
        fmt=args.format,
        quantize=args.quantize,
        gates=gates,
        int8_tool=args.int8_tool,
    )
    for line in report.lines():
        print(line)


def cmd_zeroshot(args: argparse.Namespace) -> None:
    from anomed.engine.protocols import zero_shot_leave_one_out

    zero_shot_leave_one_out(build_run_config(args), args.data, progress=not args.quiet)


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


BENCH_RUNTIMES = ("torch-compile", "onnx", "onnx-int8", "openvino", "openvino-int8")


def _bench_runtimes(names: list[str]) -> tuple[str, ...]:
    """--runtime names -> the runtimes timed beside PyTorch eager (which always runs)."""
    if "all" in names:
        return BENCH_RUNTIMES
    return tuple(n for n in dict.fromkeys(names) if n != "torch")


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


def cmd_phantom(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset

    cfg = PhantomConfig(
        n_train=args.n_train,
        n_test_normal=args.n_test_normal,
        n_test_abnormal=args.n_test_abnormal,
        image_size=args.size,
        seed=args.seed,
    )
    splits = write_phantom_dataset(args.output, cfg, overwrite=args.overwrite)
    print(
        f"wrote {len(splits.train)} training and {len(splits.test)} test phantoms to {args.output}"
    )


def cmd_phantom_bmad(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.organs import BmadPhantomConfig, write_bmad_phantoms

    cfg = BmadPhantomConfig(
        organs=tuple(args.organs),
        n_valid=(args.n_valid, args.n_valid),
        n_test=(args.n_test, args.n_test),
        size=args.size,
        seed=args.seed,
    )
    folders = write_bmad_phantoms(args.output, cfg, overwrite=args.overwrite)
    print(f"wrote {', '.join(f.name for f in folders)} (BMAD layout) to {args.output}")


def cmd_phantom_chest(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.chest import ChestPhantomConfig, write_chest_phantoms

    cfg = ChestPhantomConfig(
        n_train=args.n_train,
        n_test_normal=args.n_test_normal,
        n_test_abnormal=args.n_test_abnormal,
        size=args.size,
        seed=args.seed,
        layout=args.layout,
    )
    splits = write_chest_phantoms(args.output, cfg, overwrite=args.overwrite)
    print(
        f"wrote {len(splits.train)} training and {len(splits.test)} test chest films "
        f"({args.layout} layout) to {args.output}"
    )


def cmd_phantom_volumes(args: argparse.Namespace) -> None:
    from anomed.data.phantoms.heads import VolumePhantomConfig, write_phantom_volumes

    cfg = VolumePhantomConfig(n_cases=args.n_cases, seed=args.seed, shape=tuple(args.shape))
    cases = write_phantom_volumes(args.output, cfg, overwrite=args.overwrite)
    n_abn = sum(c.label for c in cases)
    print(
        f"wrote {len(cases)} head phantoms ({n_abn} with lesions; T1, T1CE, T2, FLAIR NIfTI, "
        f"one T1 DICOM series) to {args.output}"
    )


def cmd_import(args: argparse.Namespace) -> None:
    from anomed.data.importers import import_dataset
    from anomed.data.layouts import load_dataset
    from anomed.engine.reports import dataset_summary

    summary = import_dataset(
        args.source,
        args.output,
        args.kind,
        train_fraction=args.train_fraction,
        seed=args.seed,
        normal=tuple(args.normal),
        overwrite=args.overwrite,
    )
    print(summary.line())
    print(dataset_summary(load_dataset(summary.output, "folder")))


def cmd_volume_slices(args: argparse.Namespace) -> None:
    from anomed.engine.volumes import export_slices

    out = export_slices(
        args.volumes, args.sequence, args.view, args.output, overwrite=args.overwrite
    )
    print(f"wrote {args.sequence} {args.view} slices (folder layout) to {out}")


def cmd_crossseq(args: argparse.Namespace) -> None:
    from anomed.engine.volumes import cross_protocol

    cross_protocol(
        args.checkpoint, args.volumes, args.output, tuple(args.sequences), tuple(args.views)
    )


def cmd_demo(args: argparse.Namespace) -> None:
    from anomed.engine.demo import run_demo

    run_demo(Path(args.output), epochs=args.epochs, progress=not args.quiet)


def cmd_serve(args: argparse.Namespace) -> None:
    from anomed.config import from_dict
    from anomed.serve import ServeConfig, run_server
    from anomed.serve.config import token_from_env

    keys = ["host", "port", "data_dir", "device", "max_upload_mb", "max_batch", "batch_wait_ms"]
    keys.append("runtime")
    data = {k: getattr(args, k) for k in keys if getattr(args, k) is not None}
    data.update(runs=[str(r) for r in args.runs], token=token_from_env(args.token))
    data["access_log"] = args.access_log
    try:
        run_server(from_dict(ServeConfig, data))
    except KeyboardInterrupt:
        print("anomed serve: stopped")


def cmd_methods(args: argparse.Namespace) -> None:
    from anomed.methods import METHODS

    for name in METHODS.names():
        doc = (METHODS.get(name).__doc__ or "").strip()
        print(f"{name:12s} {doc.splitlines()[0] if doc else '(no description)'}")


def _quiet_parent() -> argparse.ArgumentParser:
    """`-q` accepted after any subcommand too (SUPPRESS keeps the top-level value otherwise)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bars"
    )
    return parent


def _subparsers(parser: argparse.ArgumentParser, dest: str, metavar: str):
    """A subparser group whose parsers all accept -q."""
    group = parser.add_subparsers(dest=dest, required=True, metavar=metavar)
    add = group.add_parser

    def add_parser(name: str, **kwargs):
        return add(name, parents=[_quiet_parent()], **kwargs)

    group.add_parser = add_parser
    return group


def _add_export_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=["onnx", "openvino"],
        default="onnx",
        help="onnx (onnxruntime) or openvino (OpenVINO IR, CPU)",
    )
    p.add_argument(
        "--quantize",
        choices=["int8"],
        help="static INT8 (onnx: ONNX Runtime QDQ; openvino: NNCF), calibrated on the run's "
        "validation images, written only within the gates below",
    )
    p.add_argument(
        "--output",
        "-o",
        help="output file (default RUN/model.onnx, model-int8.onnx, openvino.xml, "
        "openvino-int8.xml)",
    )
    p.add_argument(
        "--int8-tool",
        choices=["qdq", "nncf"],
        default="qdq",
        help="openvino int8: qdq (default: ONNX Runtime's QDQ graph, converted; measured closer "
        "to fp32) or nncf (nncf.quantize on the IR)",
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17 or newer)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier export there")
    p.add_argument(
        "--gate-rank-corr",
        type=float,
        default=0.99,
        help="int8: least Spearman correlation of test image scores with PyTorch fp32 (0.99)",
    )
    p.add_argument(
        "--gate-map-cosine",
        type=float,
        default=0.99,
        help="int8: least centred cosine of test anomaly maps with PyTorch fp32 (0.99)",
    )
    p.add_argument(
        "--gate-auroc-drop",
        type=float,
        default=1.0,
        help="int8: most image/pixel AUROC points lost against PyTorch fp32 (1.0)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="anomed", description="Few-/zero-shot medical image anomaly detection with CLIP."
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = _subparsers(parser, "command", "COMMAND")

    p = sub.add_parser("train", help="train a detector on k shots and save a checkpoint")
    _add_run_options(p)
    p.add_argument(
        "--train-data",
        nargs="+",
        metavar="ROOT",
        help="zero-shot: train on these datasets instead of shots of --data, which is tested "
        "(its pool serves only validation)",
    )
    p.add_argument("--eval", action="store_true", help="evaluate on the test split afterwards")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser(
        "zeroshot",
        help="leave-one-dataset-out: train on the others, test on "
        "each dataset under --data (a folder of datasets)",
    )
    _add_run_options(p)
    p.set_defaults(func=cmd_zeroshot)

    p = sub.add_parser("eval", help="evaluate a checkpoint on a dataset's test split")
    p.add_argument("checkpoint", type=Path, help="folder written by `anomed train`")
    p.add_argument("--data", help="dataset root (default: the one it was trained on)")
    p.add_argument("--output", "-o", help="report folder (default CHECKPOINT/eval/DATASET)")
    p.add_argument("--overwrite", action="store_true", help="replace earlier reports there")
    p.add_argument("--class-name", help="organ/class word for the prompts on --data")
    p.add_argument(
        "--num-workers",
        type=int,
        choices=range(0, 65),
        metavar="N",
        help="processes decoding test images beside the model (default: the run's)",
    )
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--batch-size", type=int)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser(
        "predict", help="score images with a checkpoint: scores, decisions, heatmaps"
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="folder written by `anomed train` (--runtime onnx|openvino: that folder after "
        "`anomed export`, or an exported .onnx / .xml file)",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        help="image files and/or folders (with --engine ray also CSV/Parquet manifests)",
    )
    p.add_argument("--output", "-o", default="runs/predict", help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace earlier results there")
    p.add_argument(
        "--strict", action="store_true", help="exit 1 when any input fails (default: only all)"
    )
    p.add_argument("--device", help="auto, cpu, cuda")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument(
        "--compile", action="store_true", help="torch.compile the backbone (large inputs only)"
    )
    _add_ray_options(p)
    p.add_argument(
        "--runtime",
        choices=["torch", "onnx", "openvino"],
        default="torch",
        help="torch (default); onnx: the exported model under onnxruntime (CUDA if present); "
        "openvino: the exported OpenVINO IR (CPU)",
    )
    p.add_argument(
        "--dicom-out",
        choices=["seg", "pmap", "both"],
        help="for DICOM series inputs: also write a DICOM Segmentation (above the threshold) "
        "and/or Parametric Map on the source series (other inputs: no DICOM objects)",
    )
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", help="export a trained detector (ONNX graph + JSON settings), self-checked"
    )
    p.add_argument("run", type=Path, help="folder written by `anomed train`")
    _add_export_options(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("bench", help="benchmarks")
    bench_sub = _subparsers(p, "bench_command", "BENCH")
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
        nargs="+",
        choices=["torch", *BENCH_RUNTIMES, "all"],
        default=["torch"],
        help="runtimes to time beside PyTorch eager: torch-compile, onnx, onnx-int8, openvino, "
        "openvino-int8, or all (graphs exported from the same method; INT8 for speed only)",
    )
    p.add_argument("--output", "-o", default="runs/bench/speed", help="folder for speed.json")
    p.set_defaults(func=cmd_bench_speed)

    p = sub.add_parser("data", help="dataset tools")
    data_sub = _subparsers(p, "data_command", "TOOL")
    p = data_sub.add_parser("phantom", help="write the synthetic brain-slice phantom dataset")
    p.add_argument("--output", "-o", default="data/phantom", help="dataset folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=48, help="normal training pool size")
    p.add_argument("--n-test-normal", type=int, default=40)
    p.add_argument("--n-test-abnormal", type=int, default=40)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    p.set_defaults(func=cmd_phantom)

    p = data_sub.add_parser(
        "phantom-bmad", help="write multi-organ phantom datasets in the BMAD/MVFA layout"
    )
    p.add_argument("--output", "-o", default="data/bmad_phantoms", help="parent folder to create")
    p.add_argument(
        "--organs",
        nargs="+",
        default=["brain", "liver", "retina"],
        choices=["brain", "liver", "retina", "chest"],
    )
    p.add_argument("--n-valid", type=int, default=16, help="good and Ungood images in valid/")
    p.add_argument("--n-test", type=int, default=20, help="good and Ungood images in test/")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_phantom_bmad)

    p = data_sub.add_parser("phantom-chest", help="write chest-film phantoms (PPAD)")
    p.add_argument("--output", "-o", default="data/chest_phantoms")
    p.add_argument("--layout", choices=["folder", "data-json"], default="folder")
    p.add_argument("--n-train", type=int, default=64)
    p.add_argument("--n-test-normal", type=int, default=40)
    p.add_argument("--n-test-abnormal", type=int, default=40)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_phantom_chest)

    p = data_sub.add_parser("phantom-volumes", help="write 3D head phantoms (4 MRI sequences)")
    p.add_argument("--output", "-o", default="data/head_phantoms")
    p.add_argument("--n-cases", type=int, default=8)
    p.add_argument("--shape", type=int, nargs=3, default=[64, 64, 48])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_phantom_volumes)

    p = data_sub.add_parser(
        "import",
        help="arrange a raw dataset (class folders, or yes/ and no/ folders) in the folder layout",
    )
    p.add_argument("source", type=Path, help="the raw dataset's top folder")
    p.add_argument(
        "--from",
        dest="kind",
        choices=["class-folders", "yes-no"],
        required=True,
        help="class-folders: normal/, benign/, ... (images beside *_mask files, or in images/ + "
        "mask(s)/); yes-no: yes/ (abnormal) and no/ (normal)",
    )
    p.add_argument("--output", "-o", required=True, help="dataset folder to create")
    p.add_argument("--train-fraction", type=float, default=0.5, help="normals in the pool")
    p.add_argument("--seed", type=int, default=0, help="seeds the train/test split of normals")
    p.add_argument(
        "--normal",
        nargs="+",
        default=[],
        help="class folders holding normal images (default: normal, healthy, no, good, negative)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import)

    p = data_sub.add_parser("volume-slices", help="slice volume cases into a 2D folder dataset")
    p.add_argument("--volumes", required=True, help="cases folder (cases.json)")
    p.add_argument("--sequence", default="t1", choices=["t1", "t1ce", "t2", "flair"])
    p.add_argument("--view", default="axial", choices=["axial", "sagittal", "coronal"])
    p.add_argument("--output", "-o", required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_volume_slices)

    p = sub.add_parser(
        "crossseq",
        help="cross-sequence / cross-view protocol: evaluate a "
        "checkpoint on every sequence x view of the test volumes",
    )
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--volumes", required=True, help="cases folder (cases.json)")
    p.add_argument("--output", "-o", default="runs/crossseq")
    p.add_argument("--sequences", nargs="+", default=["t1", "t1ce", "t2", "flair"])
    p.add_argument("--views", nargs="+", default=["axial", "sagittal", "coronal"])
    p.set_defaults(func=cmd_crossseq)

    p = sub.add_parser("demo", help="phantoms -> train MediCLIP (tiny backbone) -> evaluate")
    p.add_argument("--output", "-o", default="runs/demo")
    p.add_argument("--epochs", type=int, default=None, help="override the demo's epochs")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "serve", help="REST service and review page for trained detectors (needs [serve])"
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="checkpoint folder, or NAME=FOLDER")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--token", help="require 'Authorization: Bearer T' on /api/ (or ANOMED_TOKEN)")
    p.add_argument("--data-dir", help="uploads, pictures and verdicts (default runs/serve)")
    p.add_argument("--device", help="auto (default: GPU when present), cpu, cuda, cuda:1 ...")
    p.add_argument("--max-upload-mb", type=float, help="request size cap (default 512)")
    p.add_argument("--max-batch", type=int, help="images per forward pass (default 16)")
    p.add_argument(
        "--batch-wait-ms", type=float, help="wait for more images after the first (default 5)"
    )
    p.add_argument("--access-log", action="store_true", help="log one line per request")
    p.add_argument(
        "--runtime",
        choices=["torch", "onnx", "openvino"],
        help="torch (default), or serve each run's export (anomed export) under onnxruntime or "
        "OpenVINO",
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("methods", help="list the registered methods")
    p.set_defaults(func=cmd_methods)
    return parser


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """A user-facing warning as one line (no source file and line of anomed's code)."""
    print(f"anomed: warning: {message}", file=file or sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name never crashes a print
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    warnings.simplefilter("default", UserWarning)
    warnings.showwarning = _show_warning
    try:
        code = args.func(args)
    except AnomedError as exc:
        print(f"anomed: error: {display_text(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("anomed: interrupted", file=sys.stderr)
        return 130
    return code or 0


if __name__ == "__main__":
    sys.exit(main())
