"""Evaluation protocols beyond one k-shot run: zero-shot leave-one-dataset-out."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

from tqdm.auto import tqdm

from anomed.config import RunConfig
from anomed.data.layouts import detect_layout
from anomed.engine.reports import saved_test_split
from anomed.engine.run import eval_run, train_run
from anomed.errors import AnomedError
from anomed.methods.base import METHODS
from anomed.metrics import format_metrics_table
from anomed.outputs import write_json, write_text
from anomed.published import SetFingerprint, published_label, published_match


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
    published: dict[str, tuple[str, SetFingerprint | None]] = {}  # folder -> class, test set
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
        result, eval_dir = eval_run(art.output_dir, progress=progress)
        rows[target.name] = result.metrics
        published[target.name] = (art.info.class_name, saved_test_split(eval_dir))
    weights = cfg.backbone.pretrained or "random-init backbone"
    paper, notes = _published_rows(cfg.method, published)
    table = format_metrics_table(
        {
            **{f"{name} (ours, {cfg.backbone.model}, {weights})": m for name, m in rows.items()},
            **paper,
        },
        index_name=f"{cfg.method} [preset {cfg.preset}] zero-shot (held out)",
    )
    table += "".join(f"\n\nNote: {note}." for note in notes)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "zero_shot.md", table + "\n")
    write_json(out / "zero_shot.json", rows)
    log(table)
    return rows


def _published_rows(
    method: str, held_out: dict[str, tuple[str, SetFingerprint | None]]
) -> tuple[dict[str, dict], list[str]]:
    """The paper's zero-shot figures for the held-out datasets it reports, where the test set is
    the paper's split; for the others, the note saying why there is no row."""
    rows, notes = {}, []
    for dataset, (class_name, test) in held_out.items():
        found = published_match(method, "zero-shot", class_name, dataset, test)
        if found is None:
            continue
        key, figures, why_not = found
        if why_not:
            notes.append(f"{dataset}: {why_not}")
        else:
            rows[published_label(method, "zero-shot", class_name)] = {
                m: v / 100.0 for m, v in figures.items()
            }
    return rows, notes
