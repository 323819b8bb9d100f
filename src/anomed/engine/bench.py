"""`anomed bench`: methods x datasets x k x seeds (x ablations) under one protocol, resumable.

Every cell keeps its checkpoint, shot list, metrics and timing in its own folder and is marked
done by `cell.json`, written last and atomically: a bench killed mid-way loses at most the cell
it was in, and a rerun skips every finished cell. `results.csv` is rebuilt from the cells.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from anomed.config import BackboneConfig, DataConfig, RunConfig, TrainConfig, from_dict, load_yaml
from anomed.data.phantom import PhantomConfig, write_phantom_dataset
from anomed.engine.run import eval_run, train_run
from anomed.errors import AnomedError
from anomed.methods.base import METHODS
from anomed.metrics import METRIC_KEYS

RESULT_COLUMNS = [
    "method",
    "variant",
    "dataset",
    "k",
    "seed",
    "backbone",
    "weights",
    "selected_by",
    "train_seconds",
    "eval_seconds",
    "cell_dir",
    "class_name",
    *METRIC_KEYS,
]


@dataclass
class BenchConfig:
    """The grid. `datasets` maps a name to a root; a missing "phantom" root is generated."""

    methods: list[str] = field(default_factory=lambda: ["mediclip", "memorybank"])
    datasets: dict[str, str] = field(default_factory=lambda: {"phantom": "runs/bench/phantom"})
    ks: list[int] = field(default_factory=lambda: [4, 16])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int | None = None  # None: each method's own schedule
    image_size: int | None = None
    model: str = "anomed-tiny"
    pretrained: str | None = None
    ablations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # method -> variants
    abnormal_from_test: bool = True  # supervised methods on normal-only pools
    select: str = "val"
    output: str = "runs/bench"


@dataclass(frozen=True)
class Cell:
    method: str
    variant: dict[str, Any]
    dataset: str
    k: int
    seed: int

    @property
    def variant_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.variant.items()))

    def folder(self, out: Path) -> Path:
        name = self.method + (f"__{self.variant_label}" if self.variant else "")
        safe = "".join(c if c.isalnum() or c in "._=-," else "_" for c in name)
        return out / "cells" / safe / self.dataset / f"k{self.k}" / f"s{self.seed}"


def load_bench_config(path: str | Path | None, overrides: dict[str, Any]) -> BenchConfig:
    data = load_yaml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    cfg = from_dict(BenchConfig, data)
    for method in cfg.methods:
        METHODS.get(method)  # unknown names fail before any work
    return cfg


def cells(cfg: BenchConfig) -> Iterator[Cell]:
    for method in cfg.methods:
        for variant in [{}, *cfg.ablations.get(method, [])]:
            for dataset in cfg.datasets:
                for k in cfg.ks:
                    for seed in cfg.seeds:
                        yield Cell(method, dict(variant), dataset, k, seed)


def run_config(cfg: BenchConfig, cell: Cell, root: str, folder: Path) -> RunConfig:
    supervised = not METHODS.get(cell.method).normal_only
    return RunConfig(
        method=cell.method,
        backbone=BackboneConfig(
            model=cfg.model, pretrained=cfg.pretrained, image_size=cfg.image_size
        ),
        data=DataConfig(
            root=root,
            k=cell.k,
            seed=cell.seed,
            carve_abnormal_from_test=cfg.abnormal_from_test and supervised,
        ),
        train=TrainConfig(epochs=cfg.epochs, seed=cell.seed, select=cfg.select),
        method_args=dict(cell.variant),
        output_dir=str(folder),
    )


def _write_json_atomic(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)


def run_cell(cfg: BenchConfig, cell: Cell, root: str, out: Path) -> dict:
    """Train and evaluate one cell; returns its record (also written as cell.json)."""
    folder = cell.folder(out)
    folder.mkdir(parents=True, exist_ok=True)
    run = run_config(cfg, cell, root, folder)
    start = time.perf_counter()
    art = train_run(run, progress=False, log=lambda _: None)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result, _ = eval_run(folder, output_dir=folder / "eval", progress=False)
    record = {
        "method": cell.method,
        "variant": cell.variant_label,
        "dataset": cell.dataset,
        "k": cell.k,
        "seed": cell.seed,
        "backbone": cfg.model,
        "weights": cfg.pretrained or "random-init",
        "selected_by": art.fit.selected_by,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
        "cell_dir": str(folder.relative_to(out)),
        "class_name": art.info.class_name,
        **result.metrics,
        "config": asdict(cell),
    }
    _write_json_atomic(folder / "cell.json", record)
    return record


def _ensure_phantom(cfg: BenchConfig) -> None:
    root = cfg.datasets.get("phantom")
    if root and not Path(root).exists():
        write_phantom_dataset(root, PhantomConfig(seed=0))


def run_bench(
    cfg: BenchConfig, progress: bool = True, log: Callable[[str], None] = tqdm.write
) -> Path:
    """Run every unfinished cell, then rebuild results.csv and the report."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(asdict(cfg), indent=1))
    _ensure_phantom(cfg)
    grid = list(cells(cfg))
    todo = [c for c in grid if not (c.folder(out) / "cell.json").is_file()]
    log(f"bench: {len(grid)} cells, {len(grid) - len(todo)} already done, {len(todo)} to run")
    for cell in tqdm(todo, desc="bench", unit="cell", disable=not progress):
        try:
            record = run_cell(cfg, cell, cfg.datasets[cell.dataset], out)
        except AnomedError as exc:
            log(f"cell {cell} failed: {exc}")
            continue
        log(
            f"{cell.method} {cell.variant_label} {cell.dataset} k={cell.k} seed={cell.seed}: "
            f"I-AUROC {_pct(record['image_auroc'])}, P-AUROC {_pct(record['pixel_auroc'])}"
        )
    write_results(out)
    return out


def _pct(value: float | None) -> str:
    return "N/A" if value is None else f"{100 * value:.1f}"


def write_results(out: Path) -> Path:
    """results.csv from every finished cell's cell.json."""
    records = [json.loads(p.read_text()) for p in sorted(out.glob("cells/**/cell.json"))]
    path = out / "results.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in RESULT_COLUMNS})
    return path
