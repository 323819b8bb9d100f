"""`anomed predict` (local or Ray engine) and `anomed export`: use a trained detector."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from anomed.cli.options import add_domain_check, add_ray_options
from anomed.errors import AnomedError


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
        domain_check=args.domain_check,
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
        "domain_check": args.domain_check,
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


def register(sub) -> None:  # noqa: ANN001 (the `subparsers` group)
    """Add predict and export."""
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
    add_ray_options(p)
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
    add_domain_check(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "export", help="export a trained detector (ONNX graph + JSON settings), self-checked"
    )
    p.add_argument("run", type=Path, help="folder written by `anomed train`")
    _add_export_options(p)
    p.set_defaults(func=cmd_export)


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
        help="static INT8 (onnx: ONNX Runtime QDQ; openvino: that graph converted), calibrated "
        "on the run's validation images, written only within the gates below",
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
    gates = (
        ("--gate-rank-corr", 0.99, "least Spearman correlation of test image scores"),
        ("--gate-map-cosine", 0.99, "least centred cosine of test anomaly maps"),
        ("--gate-auroc-drop", 1.0, "most image/pixel AUROC points lost"),
    )
    for flag, default, what in gates:
        p.add_argument(
            flag, type=float, default=default, help=f"int8: {what} vs PyTorch fp32 ({default:g})"
        )
