"""Bench results as paper-style tables: results.csv rows -> series, mean ± std cells, markdown.

Reads the rows `anomed bench` writes to results.csv, groups them into series (method, ablation,
backbone, weights, selection split) and lays them out per metric with the published figures from
`anomed.published` beside ours; `anomed.viz.report` draws the plots and the HTML page from these.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from anomed.errors import AnomedError
from anomed.metrics import METRIC_KEYS
from anomed.published import PUBLISHED, SetFingerprint, protocol_name, published_match

Row = dict[str, Any]
REQUIRED_COLUMNS = ("method", "dataset", "k", "seed")
INT_COLUMNS = ("k", "seed", "k_abnormal", "n_test", "n_test_abnormal", "image_size", "epochs")
FLOAT_COLUMNS = ("train_seconds", "eval_seconds", *METRIC_KEYS)
DEFAULT_METRICS = ("image_auroc", "pixel_auroc")
MIN_SEEDS = 3  # cells over fewer seeds say how many
METRIC_NAMES = {
    "image_auroc": "image AUROC",
    "image_ap": "image AP",
    "image_f1_max": "image F1-max",
    "pixel_auroc": "pixel AUROC",
    "pixel_ap": "pixel AP",
    "pixel_f1_max": "pixel F1-max",
    "pixel_aupro": "pixel AUPRO (FPR <= 30 %)",
}
SELECTION = {
    "val": "the validation split (carved from the training pool; no test labels seen)",
    "last": "the last epoch (no model selection)",
    "test-leak": "THE TEST SET (test-leak): the epoch was picked on test labels, so these "
    "figures LEAK TEST LABELS and overstate performance",
}
LEAK_WARNING = (
    f"WARNING: rows marked 'SELECTED ON TEST' chose the model on {SELECTION['test-leak']}"
)
RANDOM_INIT_NOTE = (
    "random-init rows come from a randomly initialised backbone: they test the pipeline, not "
    "the science, and say nothing about how well a method detects disease"
)
CELL_NOTE = (
    "cells: mean ± std (sample std) over seeds, in %; (n=N): fewer than {m} seeds; "
    "N/A: metric undefined (one class, no masks); —: not run / not published; failed: every "
    "cell there failed ((N failed): some did; see Failed cells)"
)
PUBLISHED_NOTE = (
    "published rows: the papers' own figures on their real datasets with their backbone, "
    "matched to our columns by dataset class, and only where our test set is the paper's split "
    "(the same file list: results.csv column test_split)"
)


# --------------------------------------------------------------------------- loading


def _typed(value: str | None, column: str, where: str) -> Any:
    """A CSV field as int / float / str; empty (and non-finite metrics) -> None."""
    if value is None or value.strip() == "":
        return None
    try:
        if column in INT_COLUMNS:
            return int(float(value))
        if column in FLOAT_COLUMNS:
            number = float(value)
            return number if math.isfinite(number) else None
    except ValueError:
        raise AnomedError(
            f"{where}: column {column!r} holds {value!r}, not a number. Fix: repair or delete "
            "that row (the bench reruns missing cells)."
        ) from None
    return value


def load_results(out: str | Path) -> list[Row]:
    """The finished cells of a bench folder: the rows of out/results.csv with typed values.

    k and seed are int, seconds and metrics float (fractions in [0, 1]), the rest str; an
    empty field (and a NaN metric) is None. Needs the columns method, dataset, k and seed."""
    path = Path(out) / "results.csv"
    if not path.is_file():
        raise AnomedError(
            f"{path}: no results file. Fix: pass the folder `anomed bench` wrote to, or run "
            "the bench first."
        )
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise AnomedError(f"{path}: missing columns {missing}. Fix: rerun `anomed bench`.")
        rows = []
        for line, raw in enumerate(reader, start=2):
            row = {c: _typed(v, c, f"{path} line {line}") for c, v in raw.items() if c}
            if any(row.get(c) is None for c in REQUIRED_COLUMNS):
                raise AnomedError(f"{path} line {line}: empty {REQUIRED_COLUMNS} field.")
            rows.append(row)
    return rows


# --------------------------------------------------------------------------- grouping


@dataclass(frozen=True)
class _Series:
    """One line of our results: a method (+ ablation) with one backbone, weights, selection."""

    method: str
    variant: str
    backbone: str
    weights: str
    selected_by: str
    preset: str = "anomed"
    protocol: str = "standard"

    @property
    def name(self) -> str:
        return f"{self.method} [{self.variant}]" if self.variant else self.method

    @property
    def run(self) -> str:
        weights = Path(self.weights).name if "/" in self.weights else self.weights
        leak = ", SELECTED ON TEST (leak)" if self.leak else ""
        moved = ", abnormal shots moved from test" if self.moved else ""
        return f"ours ({self.backbone}, {weights}, preset {self.preset}{moved}{leak})"

    @property
    def moved(self) -> bool:
        return self.protocol != "standard"

    @property
    def leak(self) -> bool:
        return self.selected_by == "test-leak"


def _series_of(row: Row) -> _Series:
    return _Series(
        str(row["method"]),
        str(row.get("variant") or ""),
        str(row.get("backbone") or "?"),
        str(row.get("weights") or "?"),
        str(row.get("selected_by") or "unknown"),
        str(row.get("preset") or "anomed"),
        str(row.get("protocol") or "standard"),
    )


def _ordered_series(rows: Sequence[Row]) -> list[_Series]:
    """Methods in order of first appearance, each with its plain run before its ablations."""
    seen = list(dict.fromkeys(_series_of(r) for r in rows))
    methods = list(dict.fromkeys(s.method for s in seen))
    return sorted(seen, key=lambda s: (methods.index(s.method), s.variant != "", seen.index(s)))


def _datasets(rows: Sequence[Row]) -> list[str]:
    return list(dict.fromkeys(str(r["dataset"]) for r in rows))


def _ks(rows: Sequence[Row], dataset: str) -> list[int]:
    return sorted({r["k"] for r in rows if r["dataset"] == dataset})


def _k_label(k: int) -> str:
    return "zero-shot" if k == 0 else f"k={k}"


def _class_name(rows: Sequence[Row], dataset: str) -> str:
    names = [r.get("class_name") for r in rows if r["dataset"] == dataset and r.get("class_name")]
    return str(names[0]) if names else dataset


def _cells(rows: Sequence[Row], s: _Series, dataset: str, k: int) -> list[Row]:
    return [r for r in rows if _series_of(r) == s and r["dataset"] == dataset and r["k"] == k]


def is_failed(row: Row) -> bool:
    """A cell that failed: a row with status "failed" (its error says why), no metrics."""
    return row.get("status") == "failed"


def _with_failed_series(rows: Sequence[Row]) -> list[Row]:
    """Failed rows joined to the series of their method (+ ablation, preset) where one
    finished, so their "failed" sits in that series' row; the others form their own."""
    finished = {}
    for r in rows:
        if not is_failed(r):
            key = (r["method"], r.get("variant"), r.get("preset"))
            finished.setdefault(key, r)
    out = []
    for r in rows:
        twin = finished.get((r["method"], r.get("variant"), r.get("preset")))
        if is_failed(r) and twin is not None:
            r = {
                **r,
                **{c: twin.get(c) for c in ("backbone", "weights", "selected_by", "protocol")},
            }
        out.append(r)
    return out


def _cell_text(cell_rows: Sequence[Row], metric: str) -> str:
    """format_cell over the finished rows, with the failed ones said."""
    failed = sum(is_failed(r) for r in cell_rows)
    ok = [r.get(metric) for r in cell_rows if not is_failed(r)]
    if failed and not ok:
        return "failed"
    text = format_cell(ok)
    return f"{text} ({failed} failed)" if failed else text


def failed_rows(rows: Sequence[Row]) -> list[Row]:
    return [r for r in rows if is_failed(r)]


def failed_markdown(rows: Sequence[Row]) -> str:
    """A "Failed cells" section: one line per failed cell with its error ("" if none)."""
    failed = failed_rows(rows)
    if not failed:
        return ""
    lines = ["## Failed cells", "", "| method | dataset | k | seed | preset | error |"]
    lines.append("|---|---|---:|---:|---|---|")
    for r in failed:
        method = f"{r['method']} [{r['variant']}]" if r.get("variant") else str(r["method"])
        cells = [method, r["dataset"], r["k"], r["seed"], r.get("preset") or "", r.get("error")]
        lines.append("| " + " | ".join(_md("" if c is None else str(c)) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _mean_std(values: Sequence[float | None]) -> tuple[float, float, int] | None:
    """Mean and sample std of the defined values and how many there are; None if none are."""
    defined = [v for v in values if v is not None]
    if not defined:
        return None
    std = float(np.std(defined, ddof=1)) if len(defined) > 1 else 0.0
    return float(np.mean(defined)), std, len(defined)


def format_cell(values: Sequence[float | None]) -> str:
    """Fractions over seeds -> "mean ± std" in percent; "N/A" if undefined, "—" if no cell."""
    if not values:
        return "—"
    stats = _mean_std(values)
    if stats is None:
        return "N/A"
    mean, std, n = stats
    text = f"{100 * mean:.1f} ± {100 * std:.1f}" if n > 1 else f"{100 * mean:.1f}"
    return text + (f" (n={n})" if n < MIN_SEEDS else "")


# --------------------------------------------------------------------------- published


def _cite_number(method: str) -> int:
    return list(PUBLISHED).index(method) + 1


def _tested_on(rows: Sequence[Row], method: str, dataset: str, k: int) -> SetFingerprint | None:
    """The test set a method's runs in a column were tested on (None: one was not recorded);
    runs on several test sets (abnormal shots moved out per seed) give a set matching none."""
    found = sorted(
        {
            (r.get("test_split") or "", r.get("n_test") or 0, r.get("n_test_abnormal") or 0)
            for r in rows
            if r["method"] == method and r["dataset"] == dataset and r["k"] == k
        }
    )
    if not found or any(not fingerprint for fingerprint, _, _ in found):
        return None
    fingerprint, n, n_abnormal = found[0]
    return SetFingerprint(fingerprint if len(found) == 1 else "several", n, n_abnormal)


def _paper_match(method: str, rows: Sequence[Row], dataset: str, k: int):
    """published_match for one of our columns: (key, figures %, why not) or None."""
    test = _tested_on(rows, method, dataset, k)
    class_name = _class_name(rows, dataset)
    return published_match(method, protocol_name(k), class_name, dataset, test)


def _paper_value(
    method: str, rows: Sequence[Row], dataset: str, k: int, metric: str
) -> float | None:
    """The published figure for one of our columns, only where our test set is its split."""
    found = _paper_match(method, rows, dataset, k)
    return None if found is None or found[2] else found[1].get(metric)


def _split_notes(
    methods: Sequence[str], rows: Sequence[Row], columns: Sequence[tuple[str, int]], metric: str
) -> list[str]:
    """Why a published figure the paper has is not shown in a column (another test set)."""
    notes = []
    for method in methods:
        for dataset, k in columns:
            found = _paper_match(method, rows, dataset, k) if method in PUBLISHED else None
            if found and found[2] and metric in found[1]:
                notes.append(f"{method}, {dataset} {_k_label(k)}: {found[2]}")
    return list(dict.fromkeys(notes))


def _average_notes(methods: Sequence[str], metric: str) -> list[str]:
    """Published averages over several datasets (MadCLIP) cannot sit in a dataset column."""
    notes = []
    for method in methods:
        ref = PUBLISHED.get(method, {})
        for protocol, table in ref.get("results", {}).items():
            value = table.get("average", {}).get(metric) if isinstance(table, dict) else None
            if isinstance(value, int | float):
                notes.append(
                    f"{method} published [{_cite_number(method)}] ({ref['backbone']}): "
                    f"{protocol} average over its datasets = {value} (its per-dataset "
                    "figures sit in the columns where a dataset matches)"
                )
    return notes


# --------------------------------------------------------------------------- tables


@dataclass
class _TableRow:
    method: str
    run: str
    cells: list[str]
    published: bool = False
    leak: bool = False


@dataclass
class _Table:
    metric: str
    columns: list[tuple[str, int]]  # (dataset, k)
    rows: list[_TableRow]
    notes: list[tuple[str, str]]  # (text, level): level "", "warn" or "danger"

    @property
    def title(self) -> str:
        return f"{METRIC_NAMES.get(self.metric, self.metric)} (%)"


def _published_row(method: str, rows: Sequence[Row], table: _Table) -> _TableRow | None:
    if method not in PUBLISHED:
        return None
    values = [_paper_value(method, rows, d, k, table.metric) for d, k in table.columns]
    if all(v is None for v in values):
        return None
    run = f"published [{_cite_number(method)}] ({PUBLISHED[method]['backbone']})"
    cells = ["—" if v is None else f"{v:.1f}" for v in values]
    return _TableRow(method, run, cells, published=True)


def _selection_notes(series: Sequence[_Series]) -> list[tuple[str, str]]:
    modes = [m for m in dict.fromkeys(s.selected_by for s in series) if m != "unknown"]
    notes = [(f"model selected on {SELECTION.get(m, m)}", "") for m in modes if m != "test-leak"]
    return ([(LEAK_WARNING, "danger")] if "test-leak" in modes else []) + notes


def _test_size_notes(rows: Sequence[Row], series: Sequence[_Series]) -> list[tuple[str, str]]:
    """Say which rows were tested on fewer images (abnormal shots moved out of test), with n."""
    if not any(s.moved for s in series):
        return []
    parts = []
    for dataset in _datasets(rows):
        sizes = {}
        for s in series:
            n = sorted(
                {r.get("n_test") for r in rows if _series_of(r) == s and r["dataset"] == dataset}
            )
            if n and n != [None]:
                sizes[s.name] = "/".join(str(v) for v in n if v is not None)
        if len(set(sizes.values())) > 1:
            parts.append(f"{dataset}: " + ", ".join(f"{m} {n}" for m, n in sizes.items()))
    text = (
        "rows marked 'abnormal shots moved from test' trained on labelled abnormal images taken "
        "out of the test set, so they are tested on fewer images than the others"
    )
    return [(text + (" (n_test " + "; ".join(parts) + ")" if parts else ""), "warn")]


def _build_table(rows: Sequence[Row], metric: str) -> _Table:
    rows = _with_failed_series(rows)
    series = _ordered_series(rows)
    columns = [(d, k) for d in _datasets(rows) for k in _ks(rows, d)]
    table = _Table(metric, columns, [], _selection_notes(series) + _test_size_notes(rows, series))
    for i, s in enumerate(series):
        cells = [_cell_text(_cells(rows, s, d, k), metric) for d, k in columns]
        table.rows.append(_TableRow(s.name, s.run, cells, leak=s.leak))
        if i + 1 == len(series) or series[i + 1].method != s.method:
            published = _published_row(s.method, rows, table)
            table.rows += [published] if published else []
    if any(s.weights.startswith("random") for s in series):
        table.notes.append((RANDOM_INIT_NOTE, "warn"))
    if failed_rows(rows):
        table.notes.append((failed_note(rows), "danger"))
    table.notes.append((CELL_NOTE.format(m=MIN_SEEDS), ""))
    shown = list(dict.fromkeys(r.method for r in table.rows if r.published))
    if shown:
        table.notes.append((PUBLISHED_NOTE, ""))
        table.notes += [(f"[{_cite_number(m)}] {PUBLISHED[m]['citation']}", "") for m in shown]
    methods = list(dict.fromkeys(s.method for s in series))
    table.notes += [(note, "") for note in _average_notes(methods, metric)]
    table.notes += [(note, "warn") for note in _split_notes(methods, rows, table.columns, metric)]
    return table


def failed_note(rows: Sequence[Row]) -> str:
    failed = failed_rows(rows)
    return (
        f"{len(failed)} of {len(rows)} cells FAILED (status 'failed' in results.csv, with "
        "their errors under Failed cells); their columns hold no numbers"
    )


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _markdown(table: _Table) -> str:
    head = ["method", "run", *(f"{d} {_k_label(k)}" for d, k in table.columns)]
    lines = [f"### {table.title}", ""]
    for text, level in table.notes:
        lines.append(f"- **{text}**" if level == "danger" else f"- {text}")
    lines += ["", "| " + " | ".join(map(_md, head)) + " |"]
    lines.append("|" + "|".join(["---", "---", *["---:"] * len(table.columns)]) + "|")
    for row in table.rows:
        run = f"*{row.run}*" if row.published else (f"**{row.run}**" if row.leak else row.run)
        lines.append("| " + " | ".join(map(_md, [row.method, run, *row.cells])) + " |")
    return "\n".join(lines) + "\n"


def paper_tables(rows: Sequence[Row], metrics: Sequence[str] = DEFAULT_METRICS) -> dict[str, str]:
    """Markdown tables laid out like the papers': per metric, rows = method (+ ablation) and
    the published figures beside it, columns = dataset x k, cells mean ± std over seeds in %.

    Each table states which split selected the model and labels every row with its backbone."""
    return {metric: _markdown(_build_table(rows, metric)) for metric in metrics}
