"""MVFA / MLA-LP on the BMAD-layout phantoms: few-shot k=4 per organ and zero-shot leave-one-out,
printed beside MVFA's published figures (which are on the real BMAD datasets, pretrained ViT-L-14).

    python benchmarks/mvfa_table.py --parent runs/bmad_phantoms --epochs 10 --seeds 0
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np

from anomed.config import BackboneConfig, DataConfig, RunConfig, TrainConfig
from anomed.data.phantoms.organs import write_bmad_phantoms
from anomed.engine.protocols import list_datasets, zero_shot_leave_one_out
from anomed.engine.run import eval_run, train_run
from anomed.published import published_metrics

KEYS = ("image_auroc", "pixel_auroc")


def few_shot(cfg: RunConfig, dataset: Path, seeds: list[int], out: Path) -> dict[str, str]:
    runs = []
    for seed in seeds:
        run = copy.deepcopy(cfg)
        run.data = DataConfig(root=str(dataset), k=4, seed=seed)
        run.train.seed = seed
        run.output_dir = str(out / f"{dataset.name}_s{seed}")
        art = train_run(run, progress=False, log=lambda _: None)
        runs.append(eval_run(art.output_dir, progress=False)[0].metrics)
    return {
        k: f"{100 * np.mean([r[k] for r in runs]):.1f} ± {100 * np.std([r[k] for r in runs]):.1f}"
        for k in KEYS
    }


def paper(protocol: str, class_name: str) -> str:
    row = published_metrics("mvfa", protocol, class_name) or {}
    return " / ".join(f"{100 * row[k]:.1f}" if k in row else "-" for k in KEYS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parent", default="runs/bmad_phantoms")
    parser.add_argument("--methods", nargs="+", default=["mvfa", "mlalp"])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--zero-shot-epochs", type=int, default=3)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--output", default="runs/mvfa_table")
    args = parser.parse_args()
    parent = Path(args.parent)
    if not parent.exists():
        write_bmad_phantoms(parent)
    datasets = list_datasets(parent)
    lines = [
        "| method | dataset | few-shot k=4 I / P-AUROC (ours) | MVFA paper k=4 | "
        "zero-shot (ours) | MVFA paper zero-shot |",
        "|---|---|---|---|---|---|",
    ]
    for method in args.methods:
        cfg = RunConfig(
            method=method,
            backbone=BackboneConfig(image_size=args.image_size),
            train=TrainConfig(epochs=args.epochs),
            output_dir=args.output,
        )
        out = Path(args.output) / method
        zs_cfg = copy.deepcopy(cfg)
        zs_cfg.train.epochs, zs_cfg.output_dir = args.zero_shot_epochs, str(out / "zero-shot")
        zero = zero_shot_leave_one_out(zs_cfg, parent, progress=False, log=lambda _: None)
        for dataset in datasets:
            fs = few_shot(cfg, dataset, args.seeds, out / "few-shot")
            cls = dataset.name[:-3].lower()
            zs = " / ".join(f"{100 * zero[dataset.name][k]:.1f}" for k in KEYS)
            line = (
                f"| {method} | {dataset.name} (phantom) | {fs['image_auroc']} / "
                f"{fs['pixel_auroc']} | {paper('few-shot k=4', cls)} | {zs} | "
                f"{paper('zero-shot', cls)} |"
            )
            print(line, flush=True)
            lines.append(line)
    table = "\n".join(lines)
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "table.md").write_text(table + "\n")
    print(table)


if __name__ == "__main__":
    main()
