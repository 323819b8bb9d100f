"""The embedded default: phantoms -> MediCLIP on the tiny random-init backbone -> evaluation.

It shows the whole pipeline working on a CPU in minutes. Its figures come from a random-init
backbone and synthetic data: they test the pipeline, not the science, and are labelled so.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from anomed.config import DataConfig, RunConfig, TrainConfig
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
from anomed.engine.run import eval_run, train_run
from anomed.metrics import format_metrics_table
from anomed.outputs import write_json, write_text

DEMO_EPOCHS = 200  # the paper's schedule; about 1 minute of training on 2 CPU cores
DEMO_K = 16
LABEL = "random-init tiny backbone, phantom data"


def demo_config(output: Path, epochs: int | None = None) -> RunConfig:
    return RunConfig(
        method="mediclip",
        data=DataConfig(root=str(output / "phantom"), k=DEMO_K, seed=0, n_val=8),
        train=TrainConfig(epochs=epochs or DEMO_EPOCHS, val_every=5, seed=0),
        output_dir=str(output / "checkpoint"),
    )


def run_demo(
    output: Path,
    epochs: int | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Write phantoms (once), train, evaluate before/after; returns the metrics written."""
    data = output / "phantom"
    if not (data / "test").is_dir():
        log(f"writing phantom dataset to {data}")
        write_phantom_dataset(data, PhantomConfig(seed=0), overwrite=data.exists())
    cfg = demo_config(output, epochs)
    art = train_run(cfg, progress=progress, log=log, eval_before=True, overwrite=True)
    report = output / "eval"
    result, _ = eval_run(
        art.output_dir,
        output_dir=report,
        device=cfg.train.device,
        progress=progress,
        label=LABEL,
        overwrite=True,
    )
    table = format_metrics_table(
        {"before training": art.before.metrics, "after training": result.metrics},
        index_name="MediCLIP, " + LABEL,
    )
    metrics = json.loads((report / "metrics.json").read_text())
    metrics["before_training"] = art.before.metrics
    metrics["train_seconds"] = art.fit.seconds
    write_json(report / "metrics.json", metrics)
    write_text(report / "metrics.md", table + "\n")
    log(table)
    log(
        f"wrote {report}/metrics.json, metrics.md, heatmaps.png, roc.png, scores.csv; "
        f"checkpoint in {art.output_dir} (try: anomed serve {art.output_dir})"
    )
    return metrics
