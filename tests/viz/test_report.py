"""The bench report: typed results, paper-style tables, plots and the self-contained HTML page."""

from __future__ import annotations

import base64
import csv
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from anomed.errors import AnomedError
from anomed.published import SPLITS
from anomed.viz.report import (
    format_cell,
    load_results,
    paper_tables,
    published_value,
    save_bar_chart,
    save_roc_plot,
    write_report,
)

COLUMNS = [
    "method", "variant", "dataset", "k", "seed", "backbone", "weights", "selected_by",
    "train_seconds", "eval_seconds", "cell_dir", "class_name", "image_auroc", "image_ap",
    "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "pixel_aupro",
    "n_test", "n_test_abnormal", "test_split",
]  # fmt: skip

# (method, dataset, k) -> image AUROC per seed; brainmri has no masks, so no pixel metrics.
IMAGE_AUROC = {
    ("mediclip", "brainmri", 4): [0.60, 0.70],
    ("mediclip", "brainmri", 16): [0.62, 0.64],
    ("mediclip", "busi", 4): [0.55, 0.65],
    ("mediclip", "busi", 16): [0.58, 0.60],
    ("winclip", "brainmri", 4): [0.50, 0.52],
    ("winclip", "brainmri", 16): [0.51, 0.53],
    ("winclip", "busi", 4): [0.40, 0.44],
    ("winclip", "busi", 16): [0.50, 0.60, 0.70],  # three seeds: no seed-count note
}


def _fake_cell(cell: Path, seed: int) -> None:
    """eval/scores.csv (6 images) and a small eval/heatmaps.png, as a bench cell writes them."""
    (cell / "eval").mkdir(parents=True)
    lines = ["file,label,score,decision"]
    labels, scores = [0, 0, 0, 1, 1, 1], [0.1, 0.4, 0.35, 0.8, 0.3, 0.9]
    for i, (label, score) in enumerate(zip(labels, scores, strict=True)):
        lines.append(f"test/{i}.png,{label},{score + 0.01 * seed:.6f},{int(score > 0.5)}")
    (cell / "eval" / "scores.csv").write_text("\n".join(lines) + "\n")
    Image.new("RGB", (48, 24), (200, 30 * seed, 40)).save(cell / "eval" / "heatmaps.png")


def _row(method, dataset, k, seed, auroc, **extra) -> dict:
    variant = extra.pop("variant", "")
    cell_dir = f"cells/{method}{variant}/{dataset}/k{k}/s{seed}"
    pixel = "" if dataset == "brainmri" else f"{auroc + 0.1:.4f}"
    split = SPLITS.get(f"mediclip/{dataset}")  # busi, brainmri: tested on MediCLIP's split
    tested = {"n_test": split.n_test, "n_test_abnormal": split.n_abnormal} if split else {}
    tested["test_split"] = split.fingerprint if split else ""
    return {
        **tested,
        "method": method, "variant": variant, "dataset": dataset, "k": k, "seed": seed,
        "backbone": "anomed-tiny", "weights": "random-init", "selected_by": "val",
        "train_seconds": 12.5, "eval_seconds": 1.5, "cell_dir": cell_dir, "class_name": dataset,
        "image_auroc": f"{auroc:.4f}", "image_ap": "0.5", "image_f1_max": "0.6",
        "pixel_auroc": pixel, "pixel_ap": pixel, "pixel_f1_max": pixel, "pixel_aupro": pixel,
        **extra,
    }  # fmt: skip


def _write_bench(out, rows: list[dict]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    for row in rows:
        _fake_cell(out / row["cell_dir"], row["seed"])


@pytest.fixture
def bench(tmp_path):
    rows = [
        _row(method, dataset, k, seed, auroc)
        for (method, dataset, k), values in IMAGE_AUROC.items()
        for seed, auroc in enumerate(values)
    ]
    _write_bench(tmp_path / "bench", rows)
    return tmp_path / "bench"


def _table_cell(table: str, row_start: str, column: str) -> str:
    """The cell of a Markdown table in the row whose first cells start with `row_start`."""
    lines = [line for line in table.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    for line in lines[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        if " | ".join(cells).startswith(row_start):
            return cells[header.index(column)]
    raise AssertionError(f"no row starting {row_start!r} in\n{table}")


def test_load_results_types_values_and_empties(bench):
    rows = load_results(bench)
    assert len(rows) == 17
    first = rows[0]
    assert first["k"] == 4 and first["seed"] == 0 and isinstance(first["k"], int)
    assert first["image_auroc"] == pytest.approx(0.60) and first["train_seconds"] == 12.5
    assert first["variant"] is None and first["pixel_auroc"] is None  # empty -> None
    assert first["backbone"] == "anomed-tiny"


def test_load_results_errors_name_the_file(tmp_path):
    with pytest.raises(AnomedError, match="results.csv: no results file"):
        load_results(tmp_path)
    _write_bench(tmp_path / "bad", [_row("mediclip", "busi", 4, 0, 0.5, train_seconds="fast")])
    with pytest.raises(AnomedError, match=r"results.csv line 2: column 'train_seconds'"):
        load_results(tmp_path / "bad")


def test_format_cell_mean_std_seed_note_and_na():
    assert format_cell([0.60, 0.70]) == "65.0 ± 7.1 (n=2)"  # sample std: sqrt(2 * 0.05^2 / 1)
    assert format_cell([0.5, 0.6, 0.7]) == "60.0 ± 10.0"
    assert format_cell([0.8, None]) == "80.0 (n=1)"  # an undefined seed is not averaged as 0
    assert format_cell([None, None]) == "N/A" and format_cell([]) == "—"


def test_paper_tables_cells_computed_by_hand(bench):
    tables = paper_tables(load_results(bench))
    assert set(tables) == {"image_auroc", "pixel_auroc"}
    image, pixel = tables["image_auroc"], tables["pixel_auroc"]
    ours = "mediclip | ours (anomed-tiny, random-init, preset anomed)"
    assert _table_cell(image, ours, "brainmri k=4") == "65.0 ± 7.1 (n=2)"
    assert _table_cell(image, ours, "busi k=16") == "59.0 ± 1.4 (n=2)"
    assert _table_cell(image, "winclip", "busi k=16") == "60.0 ± 10.0"
    assert _table_cell(pixel, ours, "brainmri k=16") == "N/A"  # no masks: undefined, not 0
    assert _table_cell(pixel, "winclip", "busi k=4") == "52.0 ± 2.8 (n=2)"
    assert "model selected on the validation split" in image
    assert "random-init rows" in image and "not the science" in image


def test_published_mediclip_rows_beside_ours(bench):
    tables = paper_tables(load_results(bench))
    published = "mediclip | *published [1] (ViT-L-14 (openai))*"
    assert _table_cell(tables["image_auroc"], published, "brainmri k=4") == "94.1"
    assert _table_cell(tables["image_auroc"], published, "busi k=16") == "90.8"
    assert _table_cell(tables["pixel_auroc"], published, "busi k=4") == "88.0"
    assert _table_cell(tables["pixel_auroc"], published, "brainmri k=4") == "—"  # not published
    assert "Zhang et al., MediCLIP" in tables["image_auroc"]
    assert "winclip | *published" not in tables["image_auroc"]  # nothing stored for WinCLIP
    assert published_value("mvfa", "brain", 4, "pixel_auroc") == pytest.approx(97.30)
    assert published_value("mvfa", "liver", 0, "image_auroc") == pytest.approx(76.24)
    assert published_value("madclip", "brain", 16, "image_auroc") == pytest.approx(95.9)


def test_no_published_figures_beside_a_phantom(tmp_path):
    _write_bench(tmp_path / "b", [_row("mvfa", "phantom-bmad", 4, 0, 0.5, class_name="brain")])
    table = paper_tables(load_results(tmp_path / "b"))["image_auroc"]
    assert "published" not in table.split("| method")[1]


def test_no_published_row_beside_another_split_of_busi(tmp_path):
    rows = [_row("mediclip", "busi", 4, s, 0.5, test_split="0" * 64) for s in range(2)]
    _write_bench(tmp_path / "b", rows)
    table = paper_tables(load_results(tmp_path / "b"))["image_auroc"]
    assert "*published" not in table
    assert "published figures are for MediCLIP's split of BUSI; this test set differs" in table


def test_test_leak_is_flagged_loudly_and_madclip_average_noted(tmp_path):
    rows = [_row("madclip", "busi", 16, s, 0.5, selected_by="test-leak") for s in range(3)]
    _write_bench(tmp_path / "b", rows)
    table = paper_tables(load_results(tmp_path / "b"))["image_auroc"]
    assert "**WARNING" in table and "LEAK TEST LABELS" in table
    assert "SELECTED ON TEST (leak)" in _table_cell(table, "madclip", "run")
    assert "few-shot k=16 average over its datasets = 94.08" in table


def test_plots_are_written(bench, tmp_path):
    rows = load_results(bench)
    bars = save_bar_chart(rows, "brainmri", tmp_path / "plots" / "bars.png")
    roc = save_roc_plot(bench, rows, "busi", tmp_path / "plots" / "roc.png", k=4)
    for path in (bars, roc):
        with Image.open(path) as png:
            assert png.format == "PNG" and png.width > 300
    for cell in (bench / "cells").rglob("scores.csv"):
        cell.unlink()
    assert save_roc_plot(bench, rows, "busi", tmp_path / "none.png") is None  # no empty plot
    assert not (tmp_path / "none.png").exists()


def _embedded_images(page: str) -> list[Image.Image]:
    uris = re.findall(r'src="data:image/(?:png|jpeg);base64,([A-Za-z0-9+/=]+)"', page)
    return [Image.open(io.BytesIO(base64.b64decode(u))) for u in uris]


def test_write_report_is_one_self_contained_page(bench):
    path = write_report(bench, title="bench <test>")
    page = path.read_text()
    assert path == bench / "report.html" and "<title>bench &lt;test&gt;</title>" in page
    assert "<h2>Protocol</h2>" in page and "<dt>k (shots)</dt><dd>4, 16</dd>" in page
    assert "<dt>seeds</dt><dd>0, 1, 2</dd>" in page and "anomed-tiny (weights: random-init)" in page
    assert "model selected on</dt><dd>val: the validation split" in page
    assert "Random-init backbone" in page and "not the science" in page
    assert page.count("<table>") == 2 and "<td>65.0 ± 7.1 (n=2)</td>" in page
    assert "published [1] (ViT-L-14 (openai))" in page and "Zhang et al., MediCLIP" in page
    images = _embedded_images(page)
    heatmaps = [im for im in images if im.size == (48, 24)]
    assert len(images) == 4 + 4 and len(heatmaps) == 4  # 2 bars + 2 ROC; 2 methods x 2 datasets
    assert 'src="file:' not in page and '<img src="plots/' not in page
    for name in ("bars_brainmri", "bars_busi", "roc_brainmri_k16", "roc_busi_k16"):
        assert (bench / "plots" / f"{name}.png").is_file()
    tables = (bench / "tables.md").read_text()
    assert "### image AUROC (%)" in tables and "### pixel AUROC (%)" in tables
    assert "## Citations" in tables


def test_report_escapes_labels_and_shows_heatmap_seed_zero_at_largest_k(bench):
    page = write_report(bench).read_text()
    assert "mediclip — ours (anomed-tiny, random-init, preset anomed); busi, k=16, seed 0" in page
    rows = [_row("madclip", "busi", 4, 0, 0.5, variant="<b>x</b>")]
    _write_bench(bench.parent / "esc", rows)
    page = write_report(bench.parent / "esc").read_text()
    assert "&lt;b&gt;x&lt;/b&gt;" in page and "<b>x</b>" not in page


def test_report_states_the_bench_training_settings(bench):
    (bench / "bench.json").write_text('{"epochs": null, "image_size": 112}')
    write_report(bench)
    tables = (bench / "tables.md").read_text()
    assert "- epochs: each method's own schedule" in tables and "- image size: 112" in tables


def test_write_report_without_finished_cells(tmp_path):
    _write_bench(tmp_path / "empty", [])
    with pytest.raises(AnomedError, match="no finished cells yet"):
        write_report(tmp_path / "empty")
