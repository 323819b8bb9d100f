"""The bench report: results.csv -> paper-style tables, bar and ROC plots, one HTML page.

Reads what `anomed bench` writes into its output folder (results.csv, one row per finished cell,
and each cell's eval/ folder) and writes tables.md, plots/*.png and report.html beside them.
Published figures from `anomed.published` sit beside ours, labelled with the paper's backbone;
ours are labelled with the backbone and weights used and with the split that selected the model.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from anomed.errors import AnomedError
from anomed.metrics import METRIC_KEYS
from anomed.published import PUBLISHED
from anomed.viz.plots import save_roc_curves

Row = dict[str, Any]
REQUIRED_COLUMNS = ("method", "dataset", "k", "seed")
INT_COLUMNS = ("k", "seed")
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
    "N/A: metric undefined (one class, no masks); —: not run / not published"
)
PUBLISHED_NOTE = (
    "published rows: the papers' own figures on their real datasets with their backbone, "
    "matched to our columns by dataset class; never shown beside datasets named phantom"
)
PAPER_LABEL = "published (paper's backbone)"
MAX_PNG_BYTES = 400_000  # embedded heat maps above this are re-encoded as JPEG


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

    @property
    def name(self) -> str:
        return f"{self.method} [{self.variant}]" if self.variant else self.method

    @property
    def run(self) -> str:
        weights = Path(self.weights).name if "/" in self.weights else self.weights
        leak = ", SELECTED ON TEST (leak)" if self.leak else ""
        return f"ours ({self.backbone}, {weights}{leak})"

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


def _is_phantom(dataset: str) -> bool:
    return "phantom" in dataset.lower()


def _cite_number(method: str) -> int:
    return list(PUBLISHED).index(method) + 1


def published_value(method: str, class_name: str, k: int, metric: str) -> float | None:
    """A published figure in percent, or None. MediCLIP is keyed dataset -> metric -> k; the
    others protocol ("few-shot k=4", "zero-shot" for k = 0) -> class -> metric."""
    results = PUBLISHED.get(method, {}).get("results", {})
    cls = class_name.lower()
    if cls in results:
        value = results[cls].get(metric, {}).get(k)
    else:
        protocol = "zero-shot" if k == 0 else f"few-shot k={k}"
        value = results.get(protocol, {}).get(cls, {}).get(metric)
    return None if value is None else float(value)


def _paper_value(
    method: str, rows: Sequence[Row], dataset: str, k: int, metric: str
) -> float | None:
    """The published figure for one of our columns; never beside a phantom dataset."""
    if _is_phantom(dataset):
        return None
    return published_value(method, _class_name(rows, dataset), k, metric)


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
                    f"{protocol} average over its datasets = {value}; no per-dataset "
                    "figures stored, so not in the columns"
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
    modes = list(dict.fromkeys(s.selected_by for s in series))
    notes = [(f"model selected on {SELECTION.get(m, m)}", "") for m in modes if m != "test-leak"]
    return ([(LEAK_WARNING, "danger")] if "test-leak" in modes else []) + notes


def _build_table(rows: Sequence[Row], metric: str) -> _Table:
    series = _ordered_series(rows)
    columns = [(d, k) for d in _datasets(rows) for k in _ks(rows, d)]
    table = _Table(metric, columns, [], _selection_notes(series))
    for i, s in enumerate(series):
        cells = [format_cell([r.get(metric) for r in _cells(rows, s, d, k)]) for d, k in columns]
        table.rows.append(_TableRow(s.name, s.run, cells, leak=s.leak))
        if i + 1 == len(series) or series[i + 1].method != s.method:
            published = _published_row(s.method, rows, table)
            table.rows += [published] if published else []
    if any(s.weights.startswith("random") for s in series):
        table.notes.append((RANDOM_INIT_NOTE, "warn"))
    table.notes.append((CELL_NOTE.format(m=MIN_SEEDS), ""))
    shown = list(dict.fromkeys(r.method for r in table.rows if r.published))
    if shown:
        table.notes.append((PUBLISHED_NOTE, ""))
        table.notes += [(f"[{_cite_number(m)}] {PUBLISHED[m]['citation']}", "") for m in shown]
    methods = list(dict.fromkeys(s.method for s in series))
    table.notes += [(note, "") for note in _average_notes(methods, metric)]
    return table


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


# --------------------------------------------------------------------------- plots


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_") or "dataset"


def _style(rows: Sequence[Row]) -> dict[_Series, tuple[str, str]]:
    """Legend label and colour of each series, the same on every plot; the backbone / weights /
    selection join the label only where series differ in them (or leak)."""
    series = _ordered_series(rows)
    runs = {s.run for s in series}
    return {
        s: (s.name + (f" — {s.run}" if len(runs) > 1 or s.leak else ""), f"C{i % 10}")
        for i, s in enumerate(series)
    }


def _series_in(rows: Sequence[Row], dataset: str) -> list[_Series]:
    ran = {_series_of(r) for r in rows if r["dataset"] == dataset}
    return [s for s in _ordered_series(rows) if s in ran]


def _bar_panel(ax: Any, rows: Sequence[Row], dataset: str, metric: str) -> None:
    """Bars of one metric on one dataset: k as groups, one bar per series, ± std whiskers."""
    series, ks, style = _series_in(rows, dataset), _ks(rows, dataset), _style(rows)
    width, drawn = 0.8 / len(series), False
    for i, s in enumerate(series):
        for j, k in enumerate(ks):
            x, cells = j - 0.4 + width * (i + 0.5), _cells(rows, s, dataset, k)
            stats = _mean_std([r.get(metric) for r in cells])
            if stats is not None:
                label, colour, err = *style[s], 100 * stats[1]
                ax.bar(x, 100 * stats[0], width, yerr=err, capsize=3, color=colour, label=label)
                drawn = True
            elif cells:
                ax.text(x, 2, "N/A", ha="center", rotation=90, fontsize=7)
            paper = None if s.variant else _paper_value(s.method, rows, dataset, k, metric)
            if paper is not None:
                ax.scatter([x], [paper], marker="D", color="black", zorder=3, label=PAPER_LABEL)
    if not drawn:
        ax.text(0.5, 0.5, "N/A: undefined on this dataset", ha="center", transform=ax.transAxes)
    ax.axhline(50, ls=":", lw=0.8, color="grey")
    ax.set(xlim=(-0.5, len(ks) - 0.5), ylim=(0, 105), ylabel="%", xticks=range(len(ks)))
    ax.set_xticklabels([_k_label(k) for k in ks])
    ax.set_title(METRIC_NAMES.get(metric, metric), fontsize=10)


def save_bar_chart(
    rows: Sequence[Row], dataset: str, path: str | Path, metrics: Sequence[str] = DEFAULT_METRICS
) -> Path:
    """One dataset's bar chart: a panel per metric, k as groups, one bar per method (+ ablation)
    with the mean over seeds and std whiskers; published figures as black diamonds."""
    n = len(_series_in(rows, dataset)) * len(_ks(rows, dataset))
    width = min(18.0, max(7.0, len(metrics) * (1.0 + 0.3 * n)))
    fig = Figure(figsize=(width, 4.8), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(metrics), squeeze=False)[0]
    legend: dict[str, Any] = {}
    for ax, metric in zip(axes, metrics, strict=True):
        _bar_panel(ax, rows, dataset, metric)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    if legend:
        ncol = min(3, len(legend))
        fig.legend(
            legend.values(), legend.keys(), loc="outside lower center", ncol=ncol, fontsize=8
        )
    fig.suptitle(f"{dataset}: mean ± std over seeds (dotted: chance)")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _sample_cell(rows: Sequence[Row], s: _Series, dataset: str, k: int) -> Row | None:
    """The seed-0 cell of a series (the lowest seed when 0 did not run), or None."""
    cells = sorted(_cells(rows, s, dataset, k), key=lambda r: (r["seed"] != 0, r["seed"]))
    return cells[0] if cells and cells[0].get("cell_dir") else None


def _read_scores(path: Path) -> tuple[list[int], list[float]] | None:
    """Labels and scores of a cell's eval/scores.csv; None when the file is missing."""
    if not path.is_file():
        return None
    with open(path, newline="", encoding="utf-8") as fh:
        try:
            pairs = [(int(r["label"]), float(r["score"])) for r in csv.DictReader(fh)]
        except (KeyError, TypeError, ValueError) as err:
            raise AnomedError(f"{path}: unreadable ({err}); expected columns label,score") from err
    return [p[0] for p in pairs], [p[1] for p in pairs]


def save_roc_plot(
    out: str | Path, rows: Sequence[Row], dataset: str, path: str | Path, k: int | None = None
) -> Path | None:
    """One dataset's ROC curves, one per method (+ ablation), at one k (default: the largest),
    read from each seed-0 cell's eval/scores.csv; None when no cell has its scores."""
    k = max(_ks(rows, dataset)) if k is None else k
    curves, style = {}, _style(rows)
    for s in _series_in(rows, dataset):
        cell = _sample_cell(rows, s, dataset, k)
        if cell is None:
            continue
        scores = _read_scores(Path(out) / cell["cell_dir"] / "eval" / "scores.csv")
        if scores is not None:
            seed = "" if cell["seed"] == 0 else f" (seed {cell['seed']})"
            curves[style[s][0] + seed] = scores
    if not curves:
        return None
    save_roc_curves(path, curves, title=f"{dataset}, {_k_label(k)}, seed 0")
    return Path(path)


# --------------------------------------------------------------------------- HTML


def _data_uri(path: Path, max_width: int = 1200) -> str | None:
    """An image as a base64 data URI (so the page is one file), shrunk to max_width; re-encoded
    as JPEG when the PNG would be large. None when the file cannot be read."""
    try:
        with Image.open(path) as img:
            img = img.convert("RGB")
    except OSError:
        return None
    if img.width > max_width:
        img = img.resize((max_width, round(img.height * max_width / img.width)), Image.LANCZOS)
    buf, mime = io.BytesIO(), "image/png"
    img.save(buf, "PNG", optimize=True)
    if buf.tell() > MAX_PNG_BYTES:
        buf, mime = io.BytesIO(), "image/jpeg"
        img.save(buf, "JPEG", quality=85)
    return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


def _e(value: Any) -> str:
    return html.escape(str(value))


def _cls(name: str) -> str:
    return f' class="{name}"' if name else ""


def _figure(path: Path | None, caption: str) -> str:
    """An embedded image under its caption; a note instead when the file is missing."""
    uri = None if path is None else _data_uri(path)
    body = (
        f'<img src="{uri}" alt="{_e(caption)}">'
        if uri
        else f'<p class="na">missing: {_e(path)}</p>'
    )
    return f"<figure><figcaption>{_e(caption)}</figcaption>{body}</figure>"


def _notes_html(notes: Sequence[tuple[str, str]]) -> str:
    items = "".join(f"<li{_cls(level)}>{_e(text)}</li>" for text, level in notes)
    return f'<ul class="notes">{items}</ul>'


def _html_table(table: _Table) -> str:
    datasets = list(dict.fromkeys(d for d, _ in table.columns))
    top = "".join(
        f'<th colspan="{sum(d == c for c, _ in table.columns)}">{_e(d)}</th>' for d in datasets
    )
    sub = "".join(f"<th>{_k_label(k)}</th>" for _, k in table.columns)
    body = []
    for row in table.rows:
        kind = "published" if row.published else ("leak" if row.leak else "")
        cells = "".join(
            f"<td{_cls('na' if c in ('N/A', '—') else '')}>{_e(c)}</td>" for c in row.cells
        )
        body.append(f"<tr{_cls(kind)}><td>{_e(row.method)}</td><td>{_e(row.run)}</td>{cells}</tr>")
    return (
        f"<h3>{_e(table.title)}</h3>{_notes_html(table.notes)}<table><thead>"
        f'<tr><th rowspan="2">method</th><th rowspan="2">run</th>{top}</tr><tr>{sub}</tr>'
        f"</thead><tbody>{''.join(body)}</tbody></table>"
    )


def _protocol(rows: Sequence[Row]) -> list[tuple[str, str]]:
    """(label, value) lines of the header: what was run, how, and how the model was chosen."""
    series = _ordered_series(rows)
    modes = list(dict.fromkeys(s.selected_by for s in series))
    runs = dict.fromkeys(f"{s.backbone} (weights: {s.weights})" for s in series)
    seconds = sum(r.get("train_seconds") or 0.0 for r in rows)
    seconds += sum(r.get("eval_seconds") or 0.0 for r in rows)
    return [
        ("methods", ", ".join(dict.fromkeys(s.name for s in series))),
        ("datasets", ", ".join(_datasets(rows))),
        ("k (shots)", ", ".join(map(str, sorted({r["k"] for r in rows})))),
        ("seeds", ", ".join(map(str, sorted({r["seed"] for r in rows})))),
        ("backbone / weights", "; ".join(runs)),
        ("model selected on", "; ".join(f"{m}: {SELECTION.get(m, m)}" for m in modes)),
        ("finished cells", f"{len(rows)} (train + eval {seconds / 60:.1f} min)"),
    ]


def _bench_settings(out: Path) -> list[tuple[str, str]]:
    """Training settings the bench recorded in out/bench.json (absent: nothing to add)."""
    try:
        cfg = json.loads((out / "bench.json").read_text())
    except (OSError, ValueError):
        return []
    epochs, size = cfg.get("epochs"), cfg.get("image_size")
    return [
        ("epochs", "each method's own schedule" if epochs is None else f"{epochs} (all methods)"),
        ("image size", "the backbone's default" if size is None else str(size)),
    ]


def _warnings(rows: Sequence[Row]) -> list[tuple[str, str]]:
    series = _ordered_series(rows)
    out = []
    if any(s.leak for s in series):
        out.append((f"Some rows chose the model on {SELECTION['test-leak']}.", "danger"))
    if any(s.weights.startswith("random") for s in series):
        out.append((f"Random-init backbone: {RANDOM_INIT_NOTE}.", "warn"))
    return out


def _write_plots(out: Path, rows: Sequence[Row], metrics: Sequence[str]) -> str:
    """Write out/plots/ (per dataset a bar chart and the ROC curves at its largest k) and
    return them as HTML, one row per dataset."""
    parts, names = [], " / ".join(METRIC_NAMES.get(m, m) for m in metrics)
    for dataset in _datasets(rows):
        slug, k = _slug(dataset), max(_ks(rows, dataset))
        bars = save_bar_chart(rows, dataset, out / "plots" / f"bars_{slug}.png", metrics)
        roc = save_roc_plot(out, rows, dataset, out / "plots" / f"roc_{slug}_k{k}.png", k)
        figures = _figure(bars, f"{dataset}: {names} by method and k")
        figures += _figure(roc, f"{dataset}: ROC curves at {_k_label(k)}, seed 0") if roc else ""
        parts.append(f'<div class="pair">{figures}</div>')
    return "".join(parts)


def _heatmaps_html(out: Path, rows: Sequence[Row]) -> str:
    """Per dataset, each series' seed-0 eval/heatmaps.png at the dataset's largest k."""
    parts = []
    for dataset in _datasets(rows):
        k = max(_ks(rows, dataset))
        parts.append(f"<h3>{_e(dataset)} ({_k_label(k)})</h3>")
        for s in _series_in(rows, dataset):
            cell = _sample_cell(rows, s, dataset, k)
            if cell is not None:
                auroc = format_cell([cell.get("image_auroc")]).replace(" (n=1)", "")
                caption = (
                    f"{s.name} — {s.run}; {dataset}, {_k_label(k)}, seed {cell['seed']}; "
                    f"image AUROC {auroc} %"
                )
                parts.append(_figure(out / cell["cell_dir"] / "eval" / "heatmaps.png", caption))
    return "".join(parts)


def _citations() -> list[str]:
    return [
        f"[{_cite_number(m)}] {ref['citation']} — figures with {ref['backbone']}"
        for m, ref in PUBLISHED.items()
    ]


CSS = """
body{font-family:system-ui,sans-serif;max-width:1250px;margin:1.5em auto;padding:0 1em;color:#222}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{font-weight:600}dd{margin:0}
.box{padding:.6em 1em;border-radius:6px;margin:.6em 0}
.box.warn,li.warn{background:#fff6d5;border-left:5px solid #e0a800}
.box.danger,li.danger{background:#fde2e1;border-left:5px solid #c62828;font-weight:700}
table{border-collapse:collapse;margin:.5em 0 1.2em;font-size:.9em}
th,td{border:1px solid #ccc;padding:.25em .55em}th{background:#eef1f5}
td:nth-child(n+3){text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.published td{background:#f4f4f4;font-style:italic;color:#444}
tr.leak td{background:#fde2e1}td.na{color:#999}
ul.notes{font-size:.85em;color:#444;padding-left:1.2em}ul.notes li{padding:.1em .4em}
figure{margin:.6em 0 1.4em}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#333;font-weight:600;margin-bottom:.3em}
.pair{display:flex;gap:1em;align-items:flex-start}.pair figure{flex:1 1 0;min-width:0}
"""


def _page(
    title: str, rows: Sequence[Row], tables: Sequence[_Table], plots: str, heatmaps: str, out: Path
) -> str:
    lines = _protocol(rows) + _bench_settings(out)
    protocol = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in lines)
    boxes = "".join(f'<div class="box {lvl}">{_e(t)}</div>' for t, lvl in _warnings(rows))
    cites = "".join(f"<li>{_e(c)}</li>" for c in _citations())
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
        f"<h2>Protocol</h2><dl>{protocol}</dl>{boxes}"
        f"<h2>Tables</h2>{''.join(_html_table(t) for t in tables)}"
        f"<h2>Plots</h2>{plots}<h2>Heat-map samples</h2>{heatmaps}"
        f'<h2>Citations</h2><ul class="cites">{cites}</ul></body></html>\n'
    )


def _tables_markdown(title: str, rows: Sequence[Row], tables: Sequence[_Table], out: Path) -> str:
    lines = [f"# {title}: tables", ""]
    lines += [f"- {k}: {v}" for k, v in _protocol(rows) + _bench_settings(out)]
    lines += [f"- **{t}**" for t, _ in _warnings(rows)]
    lines += ["", *(_markdown(t) for t in tables), "## Citations", ""]
    return "\n".join(lines + [f"- {c}" for c in _citations()]) + "\n"


def write_report(
    out: str | Path, title: str = "anomed bench", metrics: Sequence[str] = DEFAULT_METRICS
) -> Path:
    """Write out/tables.md, out/plots/*.png and out/report.html (one self-contained page:
    protocol, tables, plots, heat-map samples, citations) from out/results.csv."""
    out = Path(out)
    rows = load_results(out)
    if not rows:
        raise AnomedError(
            f"{out / 'results.csv'}: no finished cells yet. Fix: run the bench (it resumes), "
            "then write the report again."
        )
    tables = [_build_table(rows, m) for m in metrics]
    (out / "tables.md").write_text(_tables_markdown(title, rows, tables, out), encoding="utf-8")
    plots = _write_plots(out, rows, metrics)
    page = _page(title, rows, tables, plots, _heatmaps_html(out, rows), out)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
