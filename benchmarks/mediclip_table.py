"""MediCLIP's Table 1/2 protocol on the shared data: k in {4, 8, 16, 32} x seeds, mean ± std.

Published figures (pretrained ViT-L/14) are printed beside ours (random-init tiny backbone unless
--model/--pretrained say otherwise), so the table shows the pipeline, not the science.

    python benchmarks/mediclip_table.py --root ../shared/data/mediclip --epochs 20 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from anomed.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from anomed.engine.run import eval_run, train_run
from anomed.published import MEDICLIP

METRICS = {"brainmri": ["image_auroc"], "busi": ["image_auroc", "pixel_auroc"]}


def run_cell(root: Path, name: str, k: int, seed: int, args, out: Path) -> dict:
    cell = out / f"{name}_k{k}_s{seed}"
    if (cell / "eval" / "metrics.json").is_file():  # resumable
        return json.loads((cell / "eval" / "metrics.json").read_text())
    cfg = RunConfig(
        method="mediclip",
        backbone=BackboneConfig(model=args.model, pretrained=args.pretrained),
        data=DataConfig(root=str(root / name), k=k, seed=seed),
        train=TrainConfig(epochs=args.epochs, seed=seed, select=args.select),
        output_dir=str(cell),
    )
    start = time.perf_counter()
    train_run(cfg, progress=False, log=lambda _: None)
    result, _ = eval_run(cell, output_dir=cell / "eval", progress=False)
    print(
        f"{name} k={k} seed={seed}: "
        + ", ".join(f"{m} {result.metrics[m]:.3f}" for m in METRICS[name])
        + f"  ({time.perf_counter() - start:.0f} s)",
        flush=True,
    )
    return result.metrics


def fmt(values: list[float]) -> str:
    arr = 100 * np.asarray(values)
    return f"{arr.mean():.1f} ± {arr.std():.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default="../shared/data/mediclip")
    parser.add_argument("--datasets", nargs="+", default=["brainmri", "busi"])
    parser.add_argument("--ks", nargs="+", type=int, default=[4, 8, 16, 32])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--model", default="anomed-tiny")
    parser.add_argument("--pretrained", default=None)
    parser.add_argument("--select", default="val")
    parser.add_argument("--output", default="runs/mediclip_table")
    args = parser.parse_args()
    out = Path(args.output)
    weights = args.pretrained or "random-init backbone"
    lines = [
        "| dataset | metric | source | " + " | ".join(f"k={k}" for k in args.ks) + " |",
        "|---|---|---|" + "---:|" * len(args.ks),
    ]
    for name in args.datasets:
        cells = {
            k: [run_cell(Path(args.root), name, k, s, args, out) for s in args.seeds]
            for k in args.ks
        }
        for metric in METRICS[name]:
            paper = MEDICLIP["results"][name][metric]
            lines.append(
                f"| {name} | {metric} | published ({MEDICLIP['backbone']}) | "
                + " | ".join(f"{paper[k]:.1f}" for k in args.ks)
                + " |"
            )
            lines.append(
                f"| {name} | {metric} | ours ({args.model}, {weights}, "
                f"{args.epochs} ep) | "
                + " | ".join(fmt([c[metric] for c in cells[k]]) for k in args.ks)
                + " |"
            )
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + f"\n\nSource: {MEDICLIP['citation']}\n")
    print(table)


if __name__ == "__main__":
    main()
