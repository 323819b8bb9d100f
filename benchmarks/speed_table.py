"""`anomed bench speed` for several methods, as one markdown table beside issue 8's GPU targets.

    # the GPU figures of the issue (ViT-L-14 at 240 px, random init is fine for speed):
    python benchmarks/speed_table.py --model ViT-L-14 --image-size 240 \\
        --methods mediclip mvfa madclip condprompt --batch-sizes 1 32 128 --num-workers 8
    # a quick CPU run with the tiny backbone:
    python benchmarks/speed_table.py --image-size 112 --batch-sizes 1 8 --epochs 2

Each method's JSON report is kept beside the table (runs/speed/<method>/speed.json).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from anomed.backbone import BackboneConfig
from anomed.engine.speed import SpeedConfig, run_speed
from anomed.outputs import write_json, write_text

# Issue 8's targets (H100, ViT-L-14 at 240 px, k = 16)
TARGET_IMG_PER_S = 2500.0
TARGET_ADAPT_S = {"mediclip": 10.0, "mvfa": 45.0}
TARGET_PEAK_GIB = 8.0


def _best(rows: list[dict], precision: str) -> dict | None:
    timed = [r for r in rows if r.get("precision") == precision and "img_per_s" in r]
    return max(timed, key=lambda r: r["img_per_s"]) if timed else None


def method_lines(report: dict) -> list[str]:
    """Table rows of one method: inference per precision, then every adaptation setting.
    Targets are marked on GPU runs only (they are the issue's H100 targets)."""
    name, lines = report["method"], []
    gpu = not report["device"].startswith("cpu")
    for precision in ("fp32", "bf16"):
        best = _best(report["inference"], precision)
        if best:
            met = best["img_per_s"] >= TARGET_IMG_PER_S
            ok = _mark(met) if gpu and precision == "bf16" else ""
            lines.append(
                f"| {name} | inference {precision} | {best['img_per_s']:.0f} img/s at batch "
                f"{best['batch']} {ok}| {best['peak_memory_mib'] / 1024:.2f} |"
            )
    for row in report.get("adaptation", []):
        target = TARGET_ADAPT_S.get(name)
        timed = gpu and target and row["precision"] == "bf16"
        ok = _mark(row["seconds"] <= target) if timed else ""
        peak_ok = _mark(row["peak_memory_mib"] <= TARGET_PEAK_GIB * 1024) if gpu else ""
        cache = "cached" if row["cache"] else "uncached"
        lines.append(
            f"| {name} | k={row['k']} adaptation {row['precision']} {cache}, batch "
            f"{row['batch_size']} x {row['optimizer_steps']} steps | {row['seconds']:.1f} s {ok}| "
            f"{row['peak_memory_mib'] / 1024:.2f} {peak_ok}|"
        )
    return lines


def _mark(ok: bool) -> str:
    return "(target met) " if ok else "(target missed) "


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["mediclip", "mvfa", "madclip"])
    parser.add_argument("--model", default="anomed-tiny")
    parser.add_argument("--pretrained")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32, 128])
    parser.add_argument("--epochs", type=int, help="default: each method's schedule")
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--output", default="runs/speed")
    args = parser.parse_args()
    out = Path(args.output)
    lines = ["| method | setting | speed | peak GiB |", "|---|---|---|---|"]
    for method in args.methods:
        cfg = SpeedConfig(
            method=method,
            backbone=BackboneConfig(args.model, args.pretrained, args.image_size),
            device=args.device,
            batch_sizes=tuple(args.batch_sizes),
            iters=args.iters,
            epochs=args.epochs,
            compile=args.compile,
            num_workers=args.num_workers,
        )
        report = run_speed(cfg, out / method)
        print(report["summary"], flush=True)
        lines += method_lines(report)
    device = report["device"]
    table = "\n".join([f"{args.model} at {args.image_size or 'native'} px on {device}", ""] + lines)
    save_table(out, table, args.methods)


def save_table(out: Path, table: str, methods: list[str]) -> None:
    """table.md and every method's speed.json gathered in reports.json; the table printed."""
    write_text(out / "table.md", table + "\n")
    write_json(
        out / "reports.json", [json.loads((out / m / "speed.json").read_text()) for m in methods]
    )
    print(table)


if __name__ == "__main__":
    main()
