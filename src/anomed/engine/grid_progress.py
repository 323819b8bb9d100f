"""A bench grid's progress: cells done / running / failed and the time left, one line each.

Both engines (this process, Ray tasks) report to a `GridProgress` as cells start and finish;
it logs each cell's result and the grid's state, and hands each record on (results, tracking).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Protocol

from tqdm.auto import tqdm


class _Cell(Protocol):
    @property
    def label(self) -> str: ...


def duration(seconds: float) -> str:
    """12 s, 4 min, 2.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pct(value: float | None) -> str:
    return "N/A" if value is None else f"{100 * value:.1f}"


class GridProgress:
    """Counts of a grid's cells to run; `on_record` gets each finished or failed record."""

    def __init__(
        self,
        total: int,
        log: Callable[[str], None],
        on_record: Callable[[dict[str, Any]], None],
        progress: bool = False,
    ) -> None:
        self.total, self.done, self.failed, self.running = total, 0, 0, 0
        self.log, self.on_record = log, on_record
        self.start = time.perf_counter()
        self.bar = tqdm(total=total, desc="bench", unit="cell", disable=not progress or not total)

    def started(self, cell: _Cell) -> None:
        self.running += 1
        self.log(f"cell {self.done + self.failed + self.running}/{self.total}: {cell.label} ...")

    def finished(self, cell: _Cell, record: dict[str, Any]) -> None:
        self.running = max(0, self.running - 1)
        if record.get("status") == "failed":
            self.failed += 1
            self.log(f"{cell.label}: FAILED: {record.get('error')}")
        else:
            self.done += 1
            self.log(
                f"{cell.label}: I-AUROC {_pct(record.get('image_auroc'))}, "
                f"P-AUROC {_pct(record.get('pixel_auroc'))}"
            )
        self.on_record(record)
        self.bar.update(1)
        self.log(self.line())

    def line(self) -> str:
        """bench: 3/8 done, 2 running, 1 failed, about 4 min left"""
        finished = self.done + self.failed
        left = self.total - finished
        eta = ""
        if finished and left:
            rate = finished / (time.perf_counter() - self.start)  # cells per second
            eta = f", about {duration(left / rate)} left"
        return (
            f"bench: {self.done}/{self.total} done, {self.running} running, "
            f"{self.failed} failed{eta}"
        )

    def close(self) -> None:
        self.bar.close()
