"""The bench report: results.csv -> paper-style tables, bar and ROC plots, one HTML page.

Reads what `anomed bench` writes into its output folder (results.csv, one row per finished cell,
and each cell's eval/ folder) and writes tables.md, plots/*.png and report.html beside them.
Published figures from `anomed.published` sit beside ours, labelled with the paper's backbone;
ours are labelled with the backbone and weights used and with the split that selected the model.
Loading and the tables live in `anomed.viz.tables`; they are re-exported here.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from anomed.errors import AnomedError
from anomed.published import PUBLISHED, published_value
from anomed.viz.plots import save_roc_curves
from anomed.viz.tables import (
    CELL_NOTE,
    DEFAULT_METRICS,
    FLOAT_COLUMNS,
    INT_COLUMNS,
    LEAK_WARNING,
    METRIC_NAMES,
    MIN_SEEDS,
    PUBLISHED_NOTE,
    RANDOM_INIT_NOTE,
    REQUIRED_COLUMNS,
    SELECTION,
    Row,
    _build_table,
    _cells,
    _cite_number,
    _datasets,
    _k_label,
    _ks,
    _markdown,
    _mean_std,
    _ordered_series,
    _paper_value,
    _Series,
    _series_of,
    _Table,
    failed_markdown,
    failed_note,
    failed_rows,
    format_cell,
    is_failed,
    load_results,
    paper_tables,
)

__all__ = [
    "CELL_NOTE",
    "CSS",
    "DEFAULT_METRICS",
    "FLOAT_COLUMNS",
    "INT_COLUMNS",
    "LEAK_WARNING",
    "MAX_PNG_BYTES",
    "METRIC_NAMES",
    "MIN_SEEDS",
    "PAPER_LABEL",
    "PUBLISHED_NOTE",
    "RANDOM_INIT_NOTE",
    "REQUIRED_COLUMNS",
    "SELECTION",
    "Row",
    "format_cell",
    "load_results",
    "paper_tables",
    "published_value",
    "save_bar_chart",
    "save_roc_plot",
    "write_report",
]


PAPER_LABEL = "published (paper's backbone)"
MAX_PNG_BYTES = 400_000  # embedded heat maps above this are re-encoded as JPEG


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
                label, colour = style[s]
                err = 100 * stats[1] if stats[2] > 1 else None  # no whisker for one seed
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
            f"<td{_cls('na' if c in ('N/A', '—') else 'failed' if 'failed' in c else '')}>"
            f"{_e(c)}</td>"
            for c in row.cells
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


def _bench_settings(out: Path, rows: Sequence[Row] = ()) -> list[tuple[str, str]]:
    """The training settings the numbers came from: read off the rows themselves (each cell
    records its own), else from out/bench.json for results written before rows carried them."""
    if rows and all(r.get("epochs") is not None for r in rows):
        epochs = {}
        for r in rows:
            epochs.setdefault(str(r["method"]), set()).add(int(r["epochs"]))
        sizes = sorted({int(r["image_size"]) for r in rows if r.get("image_size")})
        lines = [
            (
                "epochs",
                "; ".join(f"{m}: {', '.join(map(str, sorted(e)))}" for m, e in epochs.items()),
            ),
            ("image size", ", ".join(map(str, sizes)) or "?"),
            ("preset", ", ".join(sorted({str(r.get("preset") or "anomed") for r in rows}))),
        ]
        moved = sorted(
            {str(r["method"]) for r in rows if r.get("protocol") not in (None, "standard")}
        )
        if moved:
            lines.append(
                ("abnormal shots moved from test", ", ".join(moved) + " (smaller test sets)")
            )
        return lines
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
    out = [(failed_note(rows) + ".", "danger")] if failed_rows(rows) else []
    rows = [r for r in rows if not is_failed(r)]
    series = _ordered_series(rows)
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


def _citations(rows: Sequence[Row]) -> list[str]:
    """The papers of the methods this bench ran (and only those)."""
    ran = set(dict.fromkeys(str(r["method"]) for r in rows))
    return [
        f"[{_cite_number(m)}] {ref['citation']} — figures with {ref['backbone']}"
        for m, ref in PUBLISHED.items()
        if m in ran
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
tr.leak td{background:#fde2e1}td.na{color:#999}td.failed{color:#c62828;font-weight:700}
ul.notes{font-size:.85em;color:#444;padding-left:1.2em}ul.notes li{padding:.1em .4em}
figure{margin:.6em 0 1.4em}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#333;font-weight:600;margin-bottom:.3em}
.pair{display:flex;gap:1em;align-items:flex-start}.pair figure{flex:1 1 0;min-width:0}
"""


def _failed_html(failed: Sequence[Row]) -> str:
    """The Failed cells section: one table row per failed cell with its error."""
    if not failed:
        return ""
    head = "".join(f"<th>{h}</th>" for h in ("method", "dataset", "k", "seed", "preset", "error"))
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_e(r.get(c) if r.get(c) is not None else '')}</td>"
            for c in ("method", "dataset", "k", "seed", "preset", "error")
        )
        + "</tr>"
        for r in failed
    )
    return (
        f"<h2>Failed cells</h2><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _page(
    title: str, rows: Sequence[Row], tables: Sequence[_Table], plots: str, heatmaps: str, out: Path
) -> str:
    ok = [r for r in rows if not is_failed(r)]
    lines = _protocol(ok) + _bench_settings(out, ok) + _failed_count(rows)
    protocol = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in lines)
    boxes = "".join(f'<div class="box {lvl}">{_e(t)}</div>' for t, lvl in _warnings(rows))
    cites = "".join(f"<li>{_e(c)}</li>" for c in _citations(rows))
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
        f"<style>{CSS}</style></head><body><h1>{_e(title)}</h1>"
        f"<h2>Protocol</h2><dl>{protocol}</dl>{boxes}"
        f"{_failed_html(failed_rows(rows))}"
        f"<h2>Tables</h2>{''.join(_html_table(t) for t in tables)}"
        f"<h2>Plots</h2>{plots}<h2>Heat-map samples</h2>{heatmaps}"
        f'<h2>Citations</h2><ul class="cites">{cites}</ul></body></html>\n'
    )


def _failed_count(rows: Sequence[Row]) -> list[tuple[str, str]]:
    failed = failed_rows(rows)
    return [("failed cells", f"{len(failed)} (see Failed cells)")] if failed else []


def _tables_markdown(title: str, rows: Sequence[Row], tables: Sequence[_Table], out: Path) -> str:
    ok = [r for r in rows if not is_failed(r)]
    lines = [f"# {title}: tables", ""]
    lines += [f"- {k}: {v}" for k, v in _protocol(ok) + _bench_settings(out, ok)]
    lines += [f"- {k}: {v}" for k, v in _failed_count(rows)]
    lines += [f"- **{t}**" for t, _ in _warnings(rows)]
    lines += ["", failed_markdown(rows), *(_markdown(t) for t in tables), "## Citations", ""]
    return "\n".join(lines + [f"- {c}" for c in _citations(ok)]) + "\n"


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
    ok = [r for r in rows if not is_failed(r)]  # plots and heat maps: finished cells only
    plots = _write_plots(out, ok, metrics)
    page = _page(title, rows, tables, plots, _heatmaps_html(out, ok), out)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path
