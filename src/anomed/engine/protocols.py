"""Evaluation protocols beyond one k-shot run: zero-shot leave-one-dataset-out."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from anomed.config import RunConfig
from anomed.data.layouts import detect_layout
from anomed.data.phantoms import is_phantom_dataset
from anomed.engine.run import eval_run, train_run
from anomed.errors import AnomedError
from anomed.methods.base import METHODS
from anomed.metrics import format_metrics_table
from anomed.outputs import write_json, write_text
from anomed.published import published_label, published_metrics


def list_datasets(parent: str | Path) -> list[Path]:
    """The dataset folders directly under `parent` that a layout recognises, sorted."""
    parent = Path(parent)
    if not parent.is_dir():
        raise AnomedError(f"{parent}: no such folder of datasets")
    found = []
    for child in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            detect_layout(child)
        except AnomedError:
            continue
        found.append(child)
    return found


def zero_shot_leave_one_out(
    cfg: RunConfig,
    parent: str | Path,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
) -> dict[str, dict[str, float | None]]:
    """For each dataset under `parent`: train on all the others, test on it; a table of metrics.

    Each training batch item keeps its own dataset's organ word; the held-out dataset's pool is
    used only for validation (selection and calibration), never for training.
    """
    datasets = list_datasets(parent)
    if len(datasets) < 2:
        raise AnomedError(
            f"{parent}: the leave-one-out protocol needs at least 2 datasets, "
            f"found {[d.name for d in datasets]}"
        )
    out = Path(cfg.output_dir)
    rows: dict[str, dict[str, float | None]] = {}
    published: dict[str, str] = {}  # dataset folder -> class name (real datasets only)
    for target in datasets:
        run = copy.deepcopy(cfg)
        run.data.root = str(target)  # k = 0 for train_roots runs: prepare_run sets it
        run.data.train_roots = [str(d) for d in datasets if d != target]
        for key, value in METHODS.get(cfg.method).zero_shot_args.items():
            run.method_args.setdefault(key, value)
        run.output_dir = str(out / target.name)
        log(
            f"zero-shot: held out {target.name}, training on "
            f"{', '.join(Path(r).name for r in run.data.train_roots)}"
        )
        art = train_run(run, progress=progress, log=log)
        result, _ = eval_run(art.output_dir, progress=progress)
        rows[target.name] = result.metrics
        if not is_phantom_dataset(target):
            published[target.name] = art.info.class_name
    weights = cfg.backbone.pretrained or "random-init backbone"
    table = format_metrics_table(
        {
            **{f"{name} (ours, {cfg.backbone.model}, {weights})": m for name, m in rows.items()},
            **_published_rows(cfg.method, published),
        },
        index_name=f"{cfg.method} [preset {cfg.preset}] zero-shot (held out)",
    )
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "zero_shot.md", table + "\n")
    write_json(out / "zero_shot.json", rows)
    log(table)
    return rows


def _published_rows(method: str, class_names: dict[str, str]) -> dict[str, dict]:
    """The paper's zero-shot figures for the held-out classes it reports (on real data)."""
    rows = {}
    for dataset, class_name in class_names.items():
        metrics = published_metrics(method, "zero-shot", class_name, dataset)
        if metrics is not None:
            rows[published_label(method, "zero-shot", class_name)] = metrics
    return rows
