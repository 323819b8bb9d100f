"""`anomed bench`: methods x datasets x k x seeds (x ablations) under one protocol, resumable.

Every cell keeps its checkpoint, shot list, metrics and timing in its own folder and is marked
done by `cell.json`, written last and atomically: a bench killed mid-way loses at most the cell
it was in. `cell.json` records the cell's full run configuration; a rerun skips a finished cell
only when that configuration is the one the grid asks for now, and retrains it otherwise (other
epochs, image size, backbone, preset ...). `results.csv` is rebuilt from the cells, each row with
its own settings, test-set size and protocol.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from tqdm.auto import tqdm

from anomed.config import (
    BackboneConfig,
    Bounds,
    DataConfig,
    Positive,
    Preset,
    RunConfig,
    Seed,
    TrainConfig,
    from_dict,
    load_yaml,
    to_dict,
)
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
from anomed.engine.reports import saved_test_split
from anomed.engine.run import eval_run, train_run, validate_run_config
from anomed.errors import AnomedError
from anomed.methods.base import METHODS
from anomed.metrics import METRIC_KEYS
from anomed.outputs import write_json

RESULT_COLUMNS = [
    "method",
    "variant",
    "dataset",
    "k",
    "k_abnormal",
    "seed",
    "preset",
    "backbone",
    "weights",
    "image_size",
    "epochs",
    "protocol",
    "n_test",
    "n_test_abnormal",
    "test_split",
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
    ks: list[Annotated[int, Bounds(0)]] = field(default_factory=lambda: [4, 16])
    seeds: list[Seed] = field(default_factory=lambda: [0, 1, 2])
    epochs: Annotated[int | None, Bounds(1)] = None  # None: each method's own schedule
    image_size: Annotated[int | None, Bounds(32, 2048)] = None
    model: str = "anomed-tiny"
    pretrained: str | None = None
    preset: Preset = "anomed"
    ablations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # method -> variants
    # supervised methods on normal-only pools: move seeded abnormal test images into the pool
    # for their shots (their test sets shrink; results.csv says so per row)
    abnormal_from_test: bool = True
    select: Literal["val", "last", "test-leak"] | None = None  # None: the preset's choice
    batch_size: Positive | None = None
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


def check_grid(cfg: BenchConfig) -> None:
    """Every cell's run configuration checked (method options of each ablation variant, k)
    before any cell runs or any data are read: a typo fails at once, not cell by cell."""
    out = Path(cfg.output)
    for cell in cells(cfg):
        try:
            validate_run_config(run_config(cfg, cell, cfg.datasets[cell.dataset], cell.folder(out)))
        except AnomedError as exc:
            variant = f" variant {cell.variant_label}" if cell.variant else ""
            raise AnomedError(f"bench cell {cell.method}{variant} k={cell.k}: {exc}") from exc


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
        preset=cfg.preset,
        backbone=BackboneConfig(
            model=cfg.model, pretrained=cfg.pretrained, image_size=cfg.image_size
        ),
        data=DataConfig(
            root=root,
            k=cell.k,
            seed=cell.seed,
            carve_abnormal_from_test=cfg.abnormal_from_test and supervised,
        ),
        train=TrainConfig(
            epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cell.seed, select=cfg.select
        ),
        method_args=dict(cell.variant),
        output_dir=str(folder),
    )


def cell_settings(run: RunConfig) -> dict[str, Any]:
    """What a cell's numbers depend on: its run configuration without the output folder."""
    settings = to_dict(run)
    settings.pop("output_dir", None)
    return settings


def _is_current(cell_dir: Path, run: RunConfig) -> bool:
    record = cell_dir / "cell.json"
    if not record.is_file():
        return False
    try:
        return json.loads(record.read_text()).get("settings") == cell_settings(run)
    except ValueError:
        return False


def run_cell(cfg: BenchConfig, cell: Cell, root: str, out: Path) -> dict:
    """Train and evaluate one cell; returns its record (also written as cell.json)."""
    folder = cell.folder(out)
    run = run_config(cfg, cell, root, folder)
    settings = cell_settings(run)  # before training, which fills in the method's defaults
    start = time.perf_counter()
    art = train_run(run, progress=False, log=lambda _: None, overwrite=True)
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    result, _ = eval_run(folder, output_dir=folder / "eval", progress=False, overwrite=True)
    moved = run.data.carve_abnormal_from_test and art.info.fit.get("k_abnormal", 0) > 0
    record = {
        "method": cell.method,
        "variant": cell.variant_label,
        "dataset": cell.dataset,
        "k": cell.k,
        "k_abnormal": art.info.fit.get("k_abnormal", 0),
        "seed": cell.seed,
        "preset": run.preset,
        "backbone": cfg.model,
        "weights": cfg.pretrained or "random-init",
        "image_size": art.method.backbone.image_size,
        "epochs": art.fit.epochs,
        "protocol": "abnormal shots moved from test" if moved else "standard",
        "n_test": int(len(result.labels)),
        "n_test_abnormal": int((result.labels == 1).sum()),
        "test_split": getattr(saved_test_split(folder / "eval"), "fingerprint", ""),
        "selected_by": art.fit.selected_by,
        "train_seconds": round(train_seconds, 2),
        "eval_seconds": round(time.perf_counter() - start, 2),
        "cell_dir": str(folder.relative_to(out)),
        "class_name": art.info.class_name,
        **result.metrics,
        "config": asdict(cell),
        "settings": settings,
    }
    write_json(folder / "cell.json", record)
    return record


def _ensure_phantom(cfg: BenchConfig) -> None:
    root = cfg.datasets.get("phantom")
    if root and not Path(root).exists():
        write_phantom_dataset(root, PhantomConfig(seed=0))


def run_bench(
    cfg: BenchConfig, progress: bool = True, log: Callable[[str], None] = tqdm.write
) -> Path:
    """Run every unfinished cell, then rebuild results.csv and the report."""
    check_grid(cfg)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", asdict(cfg))
    _ensure_phantom(cfg)
    grid = list(cells(cfg))
    todo, stale = [], 0
    for c in grid:
        folder = c.folder(out)
        if not _is_current(folder, run_config(cfg, c, cfg.datasets[c.dataset], folder)):
            todo.append(c)
            stale += (folder / "cell.json").is_file()
    log(
        f"bench: {len(grid)} cells, {len(grid) - len(todo)} already done with these settings, "
        f"{len(todo)} to run"
        + (f" ({stale} trained under other settings: retrained)" if stale else "")
    )
    for i, cell in enumerate(tqdm(todo, desc="bench", unit="cell", disable=not progress), 1):
        (cell.folder(out) / "cell.json").unlink(missing_ok=True)  # stale until rewritten
        log(
            f"cell {i}/{len(todo)}: {cell.method} {cell.variant_label} {cell.dataset} "
            f"k={cell.k} seed={cell.seed} ..."
        )
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
    current = {str(c.folder(out).relative_to(out)) for c in cells(_bench_config(out))}
    records = [r for r in records if not current or r.get("cell_dir") in current]
    path = out / "results.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in records:
            writer.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in RESULT_COLUMNS})
    return path


def _bench_config(out: Path) -> BenchConfig:
    """The grid of the latest `bench run` into `out` (results list only its cells)."""
    path = out / "bench.json"
    return (
        from_dict(BenchConfig, json.loads(path.read_text()))
        if path.is_file()
        else BenchConfig(methods=[], datasets={})
    )
