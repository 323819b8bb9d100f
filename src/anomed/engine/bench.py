"""`anomed bench`: methods x datasets x k x seeds (x ablations) under one protocol, resumable.

Every cell keeps its checkpoint, shot list, metrics and timing in its own folder and is marked
done by `cell.json`, written last and atomically: a bench killed mid-way loses at most the cell
it was in. `cell.json` records the cell's full run configuration; a rerun skips a finished cell
only when that configuration is the one the grid asks for now, and retrains it otherwise (other
epochs, image size, backbone, preset ...). `results.csv` is rebuilt from the cells, each row with
its own settings, test-set size and protocol.

A cell that fails (its data cannot be read, a worker keeps dying ...) is recorded by
`failed.json` in its folder: results.csv lists it with status "failed" and its error, the
tables and the report show it, and a rerun tries it again. Cells run in this process (the
local engine) or as Ray tasks (`anomed.ray.bench`); both write the same folders, so each
resumes the other's. A grid may come from one YAML file (`load_bench_config`), checked like
a run config.
"""

from __future__ import annotations

import csv
import io
import json
import time
import traceback
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
    set_dotted,
    to_dict,
)
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
from anomed.engine.grid_progress import GridProgress
from anomed.engine.reports import saved_test_split
from anomed.engine.run import eval_run, train_run, validate_run_config
from anomed.errors import AnomedError, display_text
from anomed.methods.base import METHODS
from anomed.metrics import METRIC_KEYS
from anomed.outputs import write_json, write_text
from anomed.tracking import NO_TRACKING, GridRun, Tracking
from anomed.viz.report import write_report

# an engine runs the given cells, reporting each start and record to the GridProgress
Engine = Callable[["BenchConfig", "list[Cell]", Path, GridProgress], None]

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
    "status",  # ok | failed
    "error",  # why a failed cell failed (one line)
]
CELL_RECORD = "cell.json"  # a finished cell (written last, atomically)
FAILED_RECORD = "failed.json"  # a cell that failed, with its error
# run-config keys the grid itself sets per cell: an override may not set them
GRID_AXES = ("method", "preset", "data.root", "data.k", "data.seed", "train.seed", "output_dir")


@dataclass
class BenchConfig:
    """The grid. `datasets` maps a name to a root; a missing "phantom" root is generated.

    `overrides` sets dotted run-config keys (`train.lr`, `method_args.temperature`, ...) for
    every cell, `per_dataset` and `per_method` for some (the method's win over the dataset's)."""

    methods: list[str] = field(default_factory=lambda: ["mediclip", "memorybank"])
    datasets: dict[str, str] = field(default_factory=lambda: {"phantom": "runs/bench/phantom"})
    ks: list[Annotated[int, Bounds(0)]] = field(default_factory=lambda: [4, 16])
    seeds: list[Seed] = field(default_factory=lambda: [0, 1, 2])
    epochs: Annotated[int | None, Bounds(1)] = None  # None: each method's own schedule
    image_size: Annotated[int | None, Bounds(32, 2048)] = None
    model: str = "anomed-tiny"
    pretrained: str | None = None
    preset: Preset = "anomed"
    presets: list[Preset] = field(default_factory=list)  # a cell per preset; empty: [preset]
    ablations: dict[str, list[dict[str, Any]]] = field(default_factory=dict)  # method -> variants
    # supervised methods on normal-only pools: move seeded abnormal test images into the pool
    # for their shots (their test sets shrink; results.csv says so per row)
    abnormal_from_test: bool = True
    select: Literal["val", "last", "test-leak"] | None = None  # None: the preset's choice
    batch_size: Positive | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # dotted key -> value, every cell
    per_dataset: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> overrides
    per_method: dict[str, dict[str, Any]] = field(default_factory=dict)  # method -> overrides
    output: str = "runs/bench"

    def preset_list(self) -> list[str]:
        return list(dict.fromkeys(self.presets)) or [self.preset]


@dataclass(frozen=True)
class Cell:
    method: str
    variant: dict[str, Any]
    dataset: str
    k: int
    seed: int
    preset: str = "anomed"

    @property
    def variant_label(self) -> str:
        return ",".join(f"{k}={v}" for k, v in sorted(self.variant.items()))

    @property
    def label(self) -> str:
        preset = f" preset={self.preset}" if self.preset != "anomed" else ""
        variant = f" [{self.variant_label}]" if self.variant else ""
        return f"{self.method}{variant} {self.dataset} k={self.k} seed={self.seed}{preset}"

    def folder(self, out: Path) -> Path:
        name = self.method + (f"@{self.preset}" if self.preset != "anomed" else "")
        name += f"__{self.variant_label}" if self.variant else ""
        safe = "".join(c if c.isalnum() or c in "._=-,@" else "_" for c in name)
        return out / "cells" / safe / self.dataset / f"k{self.k}" / f"s{self.seed}"


def load_bench_config(path: str | Path | None, overrides: dict[str, Any]) -> BenchConfig:
    """The grid from a YAML grid file (if given) and the CLI's values (which win), every key
    checked like a run config; an error names the file."""
    data = load_yaml(path) if path else {}
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        cfg = from_dict(BenchConfig, data)
        _check_names(cfg)
    except AnomedError as exc:
        raise AnomedError(f"{path}: {exc}" if path else str(exc)) from exc
    return cfg


def _check_names(cfg: BenchConfig) -> None:
    for method in cfg.methods:
        METHODS.get(method)  # unknown names fail before any work
    for where, given, known in (
        ("per_method", cfg.per_method, cfg.methods),
        ("per_dataset", cfg.per_dataset, list(cfg.datasets)),
    ):
        extra = sorted(set(given) - set(known))
        if extra:
            raise AnomedError(
                f"{where}: {extra} not in the grid (it has {known}). Fix: add them to the grid "
                f"or drop those {where} entries."
            )
    blocks = [cfg.overrides, *cfg.per_method.values(), *cfg.per_dataset.values()]
    for key in (k for block in blocks for k in block):
        if key in GRID_AXES:
            raise AnomedError(
                f"overrides: {key} is set by the grid itself. Fix: use the grid's methods, "
                "datasets, ks, seeds, presets or output instead."
            )


def check_grid(cfg: BenchConfig) -> None:
    """Every cell's run configuration checked (method options of each ablation variant, k,
    overrides) before any cell runs or any data are read: a typo fails at once, not cell by
    cell."""
    _check_names(cfg)
    out = Path(cfg.output)
    for cell in cells(cfg):
        try:
            validate_run_config(run_config(cfg, cell, cfg.datasets[cell.dataset], cell.folder(out)))
        except AnomedError as exc:
            variant = f" variant {cell.variant_label}" if cell.variant else ""
            raise AnomedError(f"bench cell {cell.method}{variant} k={cell.k}: {exc}") from exc


def cells(cfg: BenchConfig) -> Iterator[Cell]:
    for method in cfg.methods:
        for preset in cfg.preset_list():
            for variant in [{}, *cfg.ablations.get(method, [])]:
                for dataset in cfg.datasets:
                    for k in cfg.ks:
                        for seed in cfg.seeds:
                            yield Cell(method, dict(variant), dataset, k, seed, preset)


def run_config(cfg: BenchConfig, cell: Cell, root: str, folder: Path) -> RunConfig:
    supervised = not METHODS.get(cell.method).normal_only
    run = RunConfig(
        method=cell.method,
        preset=cell.preset,
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
    extra = {
        **cfg.overrides,
        **cfg.per_dataset.get(cell.dataset, {}),
        **cfg.per_method.get(cell.method, {}),
    }
    if not extra:
        return run
    data = to_dict(run)
    for key, value in extra.items():
        set_dotted(data, key, value)
    return from_dict(RunConfig, data)


def cell_settings(run: RunConfig) -> dict[str, Any]:
    """What a cell's numbers depend on: its run configuration without the output folder."""
    settings = to_dict(run)
    settings.pop("output_dir", None)
    return settings


def _is_current(cell_dir: Path, run: RunConfig) -> bool:
    record = cell_dir / CELL_RECORD
    if not record.is_file():
        return False
    try:
        return json.loads(record.read_text()).get("settings") == cell_settings(run)
    except ValueError:
        return False


def _base_record(cfg: BenchConfig, cell: Cell, out: Path) -> dict[str, Any]:
    """The fields every row has, finished or failed."""
    folder = cell.folder(out)
    run = run_config(cfg, cell, cfg.datasets[cell.dataset], folder)
    return {
        "method": cell.method,
        "variant": cell.variant_label,
        "dataset": cell.dataset,
        "k": cell.k,
        "seed": cell.seed,
        "preset": cell.preset,
        "backbone": cfg.model,
        "weights": cfg.pretrained or "random-init",
        "cell_dir": str(folder.relative_to(out)),
        "config": asdict(cell),
        "settings": cell_settings(run),  # before training, which fills in the defaults
    }


def run_cell(
    cfg: BenchConfig,
    cell: Cell,
    root: str,
    out: Path,
    after_train: Callable[[], None] | None = None,
) -> dict:
    """Train and evaluate one cell; returns its record (also written as cell.json, last)."""
    folder = cell.folder(out)
    run = run_config(cfg, cell, root, folder)
    record = _base_record(cfg, cell, out)
    start = time.perf_counter()
    art = train_run(run, progress=False, log=lambda _: None, overwrite=True)
    train_seconds = time.perf_counter() - start
    if after_train is not None:
        after_train()
    start = time.perf_counter()
    result, _ = eval_run(folder, output_dir=folder / "eval", progress=False, overwrite=True)
    moved = run.data.carve_abnormal_from_test and art.info.fit.get("k_abnormal", 0) > 0
    record.update(
        {
            "k_abnormal": art.info.fit.get("k_abnormal", 0),
            "preset": art.info.run.preset,
            "image_size": art.method.backbone.image_size,
            "epochs": art.fit.epochs,
            "protocol": "abnormal shots moved from test" if moved else "standard",
            "n_test": int(len(result.labels)),
            "n_test_abnormal": int((result.labels == 1).sum()),
            "test_split": getattr(saved_test_split(folder / "eval"), "fingerprint", ""),
            "selected_by": art.fit.selected_by,
            "train_seconds": round(train_seconds, 2),
            "eval_seconds": round(time.perf_counter() - start, 2),
            "class_name": art.info.class_name,
            **result.metrics,
            "status": "ok",
            "error": "",
        }
    )
    write_json(folder / CELL_RECORD, record)
    return record


def error_text(exc: BaseException) -> str:
    """A failed cell's error on one line: an AnomedError as it is, others with their type."""
    text = str(exc) if isinstance(exc, AnomedError) else f"{type(exc).__name__}: {exc}"
    return " ".join(display_text(text).split()) or type(exc).__name__


def failed_record(cfg: BenchConfig, cell: Cell, out: Path, error: str, trace: str = "") -> dict:
    """The row of a cell that failed (written as failed.json by the grid's driver)."""
    record = _base_record(cfg, cell, out)
    record.update({"status": "failed", "error": error, "traceback": trace})
    return record


def _ensure_phantom(cfg: BenchConfig) -> None:
    root = cfg.datasets.get("phantom")
    if root and not Path(root).exists():
        write_phantom_dataset(root, PhantomConfig(seed=0))


def _todo(cfg: BenchConfig, grid: list[Cell], out: Path) -> tuple[list[Cell], int]:
    """The cells without a cell.json for today's settings, and how many had an older one."""
    todo, stale = [], 0
    for c in grid:
        folder = c.folder(out)
        if not _is_current(folder, run_config(cfg, c, cfg.datasets[c.dataset], folder)):
            todo.append(c)
            stale += (folder / CELL_RECORD).is_file()
    return todo, stale


def run_bench(
    cfg: BenchConfig,
    progress: bool = True,
    log: Callable[[str], None] = tqdm.write,
    engine: Engine | None = None,
    tracking: Tracking | None = None,
    report: bool = False,
) -> Path:
    """Run every unfinished cell (with `engine`: default this process), then rebuild
    results.csv (and, with `report`, tables.md, plots/ and report.html). With `tracking`,
    the grid is one parent run and each cell a child run."""
    check_grid(cfg)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "bench.json", asdict(cfg))
    _ensure_phantom(cfg)
    grid = list(cells(cfg))
    todo, stale = _todo(cfg, grid, out)
    log(
        f"bench: {len(grid)} cells, {len(grid) - len(todo)} already done with these settings, "
        f"{len(todo)} to run"
        + (f" ({stale} trained under other settings: retrained)" if stale else "")
    )
    for cell in todo:  # stale until rewritten
        (cell.folder(out) / CELL_RECORD).unlink(missing_ok=True)
        (cell.folder(out) / FAILED_RECORD).unlink(missing_ok=True)
    tracking = tracking or NO_TRACKING
    with tracking.grid(asdict(cfg), out) as parent:
        for cell in (c for c in grid if c not in todo):
            parent.cell(read_record(cell.folder(out)) or {}, out, resumed=True)
        watch = GridProgress(len(todo), log, lambda r: _finished(out, r, parent), progress)
        (engine or local_engine)(cfg, todo, out, watch)
        watch.close()
        write_results(out)
        if report:
            write_report(out)
        parent.finish(out, failures(out))
    return out


def _finished(out: Path, record: dict, parent: GridRun) -> None:
    if record.get("status") == "failed":
        write_json(out / record["cell_dir"] / FAILED_RECORD, record)
    parent.cell(record, out)


def local_engine(cfg: BenchConfig, todo: list[Cell], out: Path, watch: GridProgress) -> None:
    """Cells one after another in this process."""
    for cell in todo:
        watch.started(cell)
        try:
            record = run_cell(cfg, cell, cfg.datasets[cell.dataset], out)
        except Exception as exc:  # one cell's failure is its row; the grid goes on
            record = failed_record(cfg, cell, out, error_text(exc), traceback.format_exc())
        watch.finished(cell, record)


def read_record(folder: Path) -> dict | None:
    """A cell folder's record: cell.json (finished) else failed.json; None if neither reads."""
    for name in (CELL_RECORD, FAILED_RECORD):
        try:
            record = json.loads((folder / name).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            record.setdefault("status", "ok")
            return record
    return None


def write_results(out: Path) -> Path:
    """results.csv from every cell of the grid with a record: finished and failed rows."""
    found = {p.parent for p in out.glob(f"cells/**/{CELL_RECORD}")}
    found |= {p.parent for p in out.glob(f"cells/**/{FAILED_RECORD}")}
    current = {str(c.folder(out).relative_to(out)) for c in cells(_bench_config(out))}
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    for folder in sorted(found):
        record = read_record(folder)
        if record is None or (current and str(folder.relative_to(out)) not in current):
            continue
        writer.writerow(
            {k: ("" if record.get(k) is None else record.get(k)) for k in RESULT_COLUMNS}
        )
    return write_text(out / "results.csv", buffer.getvalue())


def failures(out: Path) -> list[dict[str, str]]:
    """The failed rows of out/results.csv (method, dataset, k, seed, error ...)."""
    with open(out / "results.csv", newline="", encoding="utf-8") as fh:
        return [r for r in csv.DictReader(fh) if r.get("status") == "failed"]


def _bench_config(out: Path) -> BenchConfig:
    """The grid of the latest `bench run` into `out` (results list only its cells)."""
    path = out / "bench.json"
    return (
        from_dict(BenchConfig, json.loads(path.read_text()))
        if path.is_file()
        else BenchConfig(methods=[], datasets={})
    )
