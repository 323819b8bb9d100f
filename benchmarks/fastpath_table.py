"""Does a fast-path switch change the metrics? Train the same method under named variants of the
run config (seeded repeats) and print test metrics and training time side by side.

    # feature cache on (default) vs fresh synthesis every epoch, MediCLIP's demo setting
    python benchmarks/fastpath_table.py --method mediclip --data runs/phantom --k 16 \\
        --variant cached: --variant fresh:train.cache_features=false
    # MVFA: the reference's batch 1 vs batched schedules (learning rate adjusted or not)
    python benchmarks/fastpath_table.py --method mvfa --data runs/bmad_phantoms/Brain_AD --k 4 \\
        --variant batch1:train.batch_size=1 --variant batch16: \\
        --variant batch16-lr4x:train.batch_size=16,method_args.lr=0.004

A variant is NAME:KEY=VALUE,KEY=VALUE with the keys of `--set`. Metrics come from the test split
of the dataset; with a random-init backbone they test the pipeline, not the science.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from anomed.config import RunConfig, apply_overrides, from_dict
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
from anomed.data.phantoms.organs import write_bmad_phantoms
from anomed.engine.run import eval_run, train_run

KEYS = ("image_auroc", "pixel_auroc", "pixel_aupro")


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, _, overrides = text.partition(":")
    return name, [o for o in overrides.split(",") if o]


def run_variant(args: argparse.Namespace, overrides: list[str], seed: int, out: Path) -> dict:
    base = {
        "method": args.method,
        "backbone": {"model": args.model, "image_size": args.image_size},
        "data": {"root": args.data, "k": args.k, "seed": seed},
        "train": {"seed": seed, "epochs": args.epochs},
        "output_dir": str(out),
    }
    cfg = from_dict(RunConfig, apply_overrides(base, overrides))
    art = train_run(cfg, progress=False, log=lambda _: None)
    metrics = eval_run(art.output_dir, progress=False)[0].metrics
    return {
        **{k: metrics.get(k) for k in KEYS},
        "train_seconds": art.fit.seconds,
        "cached": art.fit.cached,
        "best_epoch": art.fit.best_epoch,
    }


def _cell(values: list[float | None], scale: float = 100.0, digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{scale * np.mean(values):.{digits}f} ± {scale * np.std(values):.{digits}f}"


def ensure_data(root: str) -> None:
    """Write the phantom set the path names if it is missing (brain phantoms or BMAD organs)."""
    path = Path(root)
    if path.exists():
        return
    if path.parent.name == "bmad_phantoms" or path.name.endswith("_AD"):
        write_bmad_phantoms(path.parent)
    else:
        write_phantom_dataset(path, PhantomConfig())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--method", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--k", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=None, help="default: the method's")
    parser.add_argument("--model", default="anomed-tiny")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variant", action="append", required=True, metavar="NAME:K=V,...")
    parser.add_argument("--output", default="runs/fastpath")
    args = parser.parse_args()
    ensure_data(args.data)
    out = Path(args.output) / f"{args.method}_{Path(args.data).name}_k{args.k}"
    rows = {}
    for text in args.variant:
        name, overrides = parse_variant(text)
        rows[name] = [run_variant(args, overrides, s, out / f"{name}_s{s}") for s in args.seeds]
        print(name, json.dumps(rows[name]), flush=True)
    lines = [
        f"{args.method} on {args.data}, k={args.k}, seeds {args.seeds}, {args.model} "
        f"at {args.image_size or 'native'} px",
        "",
        "| variant | I-AUROC | P-AUROC | AUPRO | training s | cached |",
        "|---|---|---|---|---|---|",
    ]
    for name, runs in rows.items():
        metrics = [_cell([r[k] for r in runs]) for k in KEYS]
        seconds = _cell([r["train_seconds"] for r in runs], scale=1.0)
        lines.append(f"| {name} | {' | '.join(metrics)} | {seconds} | {runs[0]['cached']} |")
    table = "\n".join(lines)
    out.mkdir(parents=True, exist_ok=True)
    (out / "table.md").write_text(table + "\n")
    (out / "runs.json").write_text(json.dumps(rows, indent=1))
    print(table)


if __name__ == "__main__":
    main()
