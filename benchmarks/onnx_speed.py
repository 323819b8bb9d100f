"""ONNX Runtime beside PyTorch (fp32, CPU by default): one markdown table for several methods.

    # the README's figures (take them on a quiet machine: nothing else running)
    python benchmarks/onnx_speed.py --methods mediclip mvfa madclip condprompt memorybank \\
        --image-size 224 --batch-sizes 1 8 --iters 10 --device cpu

Each method's `anomed bench speed --runtime onnx` JSON report is kept beside the table
(runs/onnx_speed/<method>/speed.json). Random-init backbone: speed does not depend on the weights.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from speed_table import save_table  # benchmarks/ is on sys.path when run as a script

from anomed.backbone import BackboneConfig
from anomed.engine.speed import SpeedConfig, run_speed


def method_lines(report: dict) -> list[str]:
    """One row per batch size: PyTorch and ONNX Runtime img/s and latency, and the ratio."""
    torch_rows = {r["batch"]: r for r in report["inference"] if "img_per_s" in r}
    lines = []
    for row in report.get("onnx_inference", []):
        if "img_per_s" not in row:
            lines.append(f"| {report['method']} | - | skipped: {row['skipped']} | | | | |")
            continue
        pt = torch_rows[row["batch"]]
        lines.append(
            f"| {report['method']} | {row['batch']} | {pt['img_per_s']:.1f} | "
            f"{pt['latency_ms']:.1f} | {row['img_per_s']:.1f} | {row['latency_ms']:.1f} | "
            f"{row['img_per_s'] / pt['img_per_s']:.2f}x |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--methods", nargs="+", default=["mediclip", "mvfa", "madclip", "condprompt", "memorybank"]
    )
    parser.add_argument("--model", default="anomed-tiny")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--output", default="runs/onnx_speed")
    args = parser.parse_args()
    out = Path(args.output)
    lines = [
        "| method | batch | PyTorch img/s | PyTorch ms/img | ONNX Runtime img/s | "
        "ONNX Runtime ms/img | ONNX / PyTorch |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for method in args.methods:
        cfg = SpeedConfig(
            method=method,
            backbone=BackboneConfig(model=args.model, image_size=args.image_size),
            device=args.device,
            batch_sizes=tuple(args.batch_sizes),
            precisions=("fp32",),
            iters=args.iters,
            adapt=False,
            onnx=True,
        )
        report = run_speed(cfg, out / method)
        print(report["summary"], flush=True)
        lines += method_lines(report)
    title = (
        f"{args.model} (random init) at {args.image_size} px, fp32, on {report['device']}, "
        f"{torch.get_num_threads()} threads for both runtimes"
    )
    table = "\n".join([title, "", *lines])
    save_table(out, table, args.methods)


if __name__ == "__main__":
    main()
