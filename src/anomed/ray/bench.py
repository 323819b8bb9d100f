"""`anomed bench run --engine ray`: each grid cell a Ray task, placed by its resources.

A task trains and evaluates one cell with the local engine's own `run_cell`, in the same
bench folder (which every node must see), so both engines resume each other's folders: a
cell is done when its cell.json is there, written last and atomically. A worker that dies
mid-cell leaves no cell.json; Ray runs the task again (at most `retries` times), and a cell
that still fails comes back as a failed row with its error while the grid goes on. At most
as many tasks are in flight as the cluster can run at once, so "running" means running.

Same numbers as the local engine: a task runs torch with `cpus_per_cell` threads (1 by
default) and otherwise the same code on the same inputs; tests compare results.csv.
"""

from __future__ import annotations

import math
import os
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

from anomed.config import Bounds, from_dict
from anomed.engine.bench import (
    BenchConfig,
    Cell,
    Engine,
    error_text,
    failed_record,
    run_cell,
)
from anomed.engine.grid_progress import GridProgress
from anomed.errors import AnomedError
from anomed.ray.pipeline import ADDRESS, ray_session

CRASH_ENV = "ANOMED_BENCH_CRASH_DIR"  # fault injection for tests (see _maybe_crash)


@dataclass
class RayBenchConfig:
    """How the Ray engine places cells; the CLI's flags, checked by `from_dict`."""

    address: Annotated[str | None, ADDRESS] = None  # None: a Ray on this machine only
    gpus_per_cell: Annotated[float | None, Bounds(0)] = None  # None: 1 if the cluster has GPUs
    cpus_per_cell: Annotated[float, Bounds(0.01)] = 1.0  # also the cell's torch threads
    retries: Annotated[int, Bounds(0, 10)] = 2  # reruns of a cell whose worker died


def _maybe_crash() -> None:
    """Tests kill a worker mid-cell (trained, not yet evaluated or recorded): when
    $ANOMED_BENCH_CRASH_DIR/crash exists, the first task to rename it dies at once."""
    folder = os.environ.get(CRASH_ENV)
    if not folder:
        return
    try:
        os.rename(os.path.join(folder, "crash"), os.path.join(folder, "crashed"))
    except OSError:
        return
    os._exit(17)


def _cell_task(
    cfg: dict[str, Any], cell: dict[str, Any], out: str, threads: int, cwd: str
) -> dict[str, Any]:
    """One cell on a Ray worker: its record, or a failed record with the error. Relative
    dataset roots are read from the driver's folder, as the local engine reads them."""
    import torch

    torch.set_num_threads(threads)
    if os.path.isdir(cwd):
        os.chdir(cwd)
    bench, c = from_dict(BenchConfig, cfg), Cell(**cell)
    try:
        return run_cell(bench, c, bench.datasets[c.dataset], Path(out), after_train=_maybe_crash)
    except Exception as exc:  # the cell's own failure: a failed row, not a retry
        return failed_record(bench, c, Path(out), error_text(exc), traceback.format_exc())


def _capacity(ray, cpus: float, gpus: float) -> int:
    """How many cells the cluster can run at once."""
    total = ray.cluster_resources()
    slots = math.floor(total.get("CPU", 0) / cpus + 1e-9)
    if gpus > 0:
        slots = min(slots, math.floor(total.get("GPU", 0) / gpus + 1e-9))
    if slots < 1:
        raise AnomedError(
            f"the Ray cluster ({total.get('CPU', 0):g} CPUs, {total.get('GPU', 0):g} GPUs) cannot "
            f"hold one cell ({cpus:g} CPUs, {gpus:g} GPUs). Fix: lower --cpus-per-cell or "
            "--gpus-per-cell, or add nodes."
        )
    return slots


def _lost_cell_error(exc: Exception, retries: int) -> str:
    return (
        f"the Ray worker running this cell died {retries + 1} times ({type(exc).__name__}); "
        "nothing of it was recorded. Fix: check the node's memory and logs "
        "(/tmp/ray/session_latest/logs), then run the bench again: it retries this cell."
    )


def ray_engine(rcfg: RayBenchConfig, progress: bool = True) -> Engine:
    """An engine for `run_bench` that runs the cells as Ray tasks."""

    def run(cfg: BenchConfig, todo: list[Cell], out: Path, watch: GridProgress) -> None:
        if not todo:
            return
        with ray_session(rcfg.address, progress) as ray:
            gpus = rcfg.gpus_per_cell
            if gpus is None:
                gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
            task = ray.remote(_cell_task).options(
                num_cpus=rcfg.cpus_per_cell,
                num_gpus=gpus,
                max_retries=rcfg.retries,
                retry_exceptions=False,
            )
            _drive(ray, task, cfg, todo, out, watch, _capacity(ray, rcfg.cpus_per_cell, gpus))

    def _drive(ray, task, cfg, todo, out, watch, slots) -> None:
        config, threads = asdict(cfg), max(1, int(rcfg.cpus_per_cell))
        waiting, running = list(todo), {}
        while waiting or running:
            while waiting and len(running) < slots:
                cell = waiting.pop(0)
                ref = task.remote(config, asdict(cell), str(out.resolve()), threads, os.getcwd())
                running[ref] = cell
                watch.started(cell)
            ready, _ = ray.wait(list(running), num_returns=1)
            cell = running.pop(ready[0])
            try:
                record = ray.get(ready[0])
            except Exception as exc:  # the worker died more than `retries` times
                record = failed_record(cfg, cell, out, _lost_cell_error(exc, rcfg.retries))
            watch.finished(cell, record)

    return run
