"""CPU runtimes side by side: PyTorch eager and + compile, ONNX Runtime fp32 / INT8, OpenVINO
fp32 / INT8, on one method and one backbone: one markdown table, the CPU beside it.

    # docs/guides/cpu.md's tables (quiet machine; each command about 3 min on 2 cores)
    python benchmarks/onnx_speed.py --methods mediclip --model ViT-B-16 \\
        --runtimes onnx onnx-int8 --batch-sizes 1 8 --iters 3 --output runs/cpu_b16_onnx
    python benchmarks/onnx_speed.py --methods mediclip --model ViT-B-16 \\
        --runtimes openvino openvino-int8 --batch-sizes 1 8 --iters 3 --output runs/cpu_b16_ov
    python benchmarks/onnx_speed.py --methods mediclip --model ViT-B-16 \\
        --runtimes torch-compile --batch-sizes 1 8 --iters 3 --output runs/cpu_b16_compile
    python benchmarks/onnx_speed.py --methods mediclip --model ViT-L-14 \\
        --image-size 240 --runtimes onnx-int8 --batch-sizes 1 8 --iters 2 --output runs/cpu_l14_ort
    python benchmarks/onnx_speed.py --methods mediclip --model ViT-L-14 \\
        --image-size 240 --runtimes openvino-int8 --batch-sizes 1 8 --iters 2 \\
        --output runs/cpu_l14_ov
    python benchmarks/onnx_speed.py --methods mediclip --model ViT-B-16 \\
        --runtimes --adapt --batch-sizes 1 --iters 1 --output runs/cpu_adapt_mediclip
    python benchmarks/onnx_speed.py --methods mvfa --model ViT-B-16 \\
        --runtimes --adapt --batch-sizes 1 --iters 1 --output runs/cpu_adapt_mvfa

Random-init weights (said so in the table): speed does not depend on the weights. PyTorch eager
always runs, so every table carries its own baseline. Each method's `anomed bench speed` JSON
report is kept beside the table (OUTPUT/<method>/speed.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from speed_table import save_table  # benchmarks/ is on sys.path when run as a script

from anomed.backbone import BackboneConfig
from anomed.engine.speed import SpeedConfig, cpu_line, run_speed

RUNTIMES = ["torch-compile", "onnx", "onnx-int8", "openvino", "openvino-int8"]
HEADER = [
    "| method | runtime | precision | batch | img/s | ms/img | peak MiB | model MiB | vs eager |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|",
]


def method_lines(report: dict) -> list[str]:
    """One row per runtime and batch size; the ratio is to PyTorch eager at the same batch."""
    eager = {r["batch"]: r for r in report["inference"] if "img_per_s" in r}
    lines = []
    for row in report["inference"] + report.get("runtimes", []):
        name = row.get("runtime", "torch")
        if "img_per_s" not in row:
            lines.append(f"| {report['method']} | {name} | | | skipped: {row['skipped']} |||||")
            continue
        base = eager.get(row["batch"])
        ratio = f"{row['img_per_s'] / base['img_per_s']:.2f}x" if base else "-"
        lines.append(
            f"| {report['method']} | {name} | {row['precision']} | {row['batch']} | "
            f"{row['img_per_s']:.2f} | {row['latency_ms']:.1f} | {row['peak_memory_mib']:.0f} | "
            f"{row.get('model_mib', float('nan')):.1f} | {ratio} |"
        )
    return lines


def adaptation_lines(report: dict) -> list[str]:
    return [
        f"| {report['method']} | {a['k']} | {a['epochs']} | {a['batch_size']} | "
        f"{'on' if a['cache'] else 'off'} | {a['seconds']:.1f} | {a['peak_memory_mib']:.0f} |"
        for a in report.get("adaptation", [])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["mediclip"])
    parser.add_argument("--model", default="anomed-tiny", help="e.g. ViT-B-16, ViT-L-14")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runtimes", nargs="*", default=RUNTIMES, choices=RUNTIMES)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--adapt", action="store_true", help="add k=16 adaptation (cache on)")
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--output", default="runs/cpu_speed")
    args = parser.parse_args()
    out = Path(args.output)
    lines, adapt = list(HEADER), []
    for method in args.methods:
        cfg = SpeedConfig(
            method=method,
            backbone=BackboneConfig(model=args.model, image_size=args.image_size),
            device=args.device,
            batch_sizes=tuple(args.batch_sizes),
            precisions=("fp32",),
            iters=args.iters,
            k=args.k,
            adapt=args.adapt,
            cache=(True,),
            runtimes=tuple(args.runtimes),
        )
        report = run_speed(cfg, out / method)
        print(report["summary"], flush=True)
        lines += method_lines(report)
        adapt += adaptation_lines(report)
    title = (
        f"{args.model} (random init: speed only) at {args.image_size} px on {report['device']}, "
        f"{torch.get_num_threads()} threads for every runtime. {cpu_line(report['cpu'])}"
    )
    parts = [title, "", *lines]
    if adapt:
        parts += [
            "",
            "| method | k | epochs | batch | feature cache | adaptation s | peak MiB |",
            "|---|---:|---:|---:|---|---:|---:|",
            *adapt,
        ]
    save_table(out, "\n".join(parts), args.methods)


if __name__ == "__main__":
    main()
