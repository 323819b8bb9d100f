"""Grid files for `anomed bench run --grid`: checked like configs before any cell runs, their
overrides reaching each cell; failed cells as rows in results.csv, tables.md and report.html."""

from __future__ import annotations

import csv
from dataclasses import asdict
from pathlib import Path

import pytest

import anomed.engine.bench as bench
from anomed.engine.bench import (
    BenchConfig,
    Cell,
    cells,
    check_grid,
    failed_record,
    load_bench_config,
    run_bench,
    run_config,
    write_results,
)
from anomed.errors import AnomedError
from anomed.outputs import write_json
from anomed.viz.report import write_report

EXAMPLES = Path(__file__).parents[2] / "examples" / "grids"


def _write(tmp_path, text: str) -> Path:
    path = tmp_path / "grid.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("methods: [memorybank]\nsedes: [0]\n", "unknown BenchConfig keys ['sedes']"),
        ("methods: [nosuch]\n", "nosuch"),
        ("ks: [-1]\n", "ks"),
        ("methods: [memorybank]\nper_method: {mvfa: {train.lr: 0.1}}\n", "per_method: ['mvfa']"),
        ("datasets: {a: x}\nper_dataset: {b: {train.lr: 0.1}}\n", "per_dataset: ['b']"),
        ("overrides: {data.k: 4}\n", "data.k is set by the grid itself"),
        ("presets: [fastest]\n", "presets"),
    ],
)
def test_a_bad_grid_file_fails_naming_the_file(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(AnomedError) as err:
        load_bench_config(path, {})
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_a_bad_override_fails_before_any_cell_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "run_cell", lambda *a, **k: pytest.fail("a cell ran"))
    path = _write(
        tmp_path,
        "methods: [memorybank]\ndatasets: {p: nowhere}\nks: [2]\nseeds: [0]\n"
        f"overrides: {{train.epochs: many}}\noutput: {tmp_path / 'b'}\n",
    )
    with pytest.raises(AnomedError, match="train.epochs"):
        run_bench(load_bench_config(path, {}), progress=False)
    assert not (tmp_path / "b").exists()


def test_overrides_reach_each_cell_the_method_winning(tmp_path):
    cfg = load_bench_config(
        _write(
            tmp_path,
            "methods: [memorybank, mvfa]\ndatasets: {a: x, b: y}\nks: [2]\nseeds: [0]\n"
            "presets: [anomed, reference]\noverrides: {data.n_val: 3}\n"
            "per_dataset: {b: {data.n_val: 5, train.target_fpr: 0.1}}\n"
            "per_method: {mvfa: {train.target_fpr: 0.2, method_args.lr: 0.0005}}\n",
        ),
        {},
    )
    check_grid(cfg)
    grid = list(cells(cfg))
    assert len(grid) == 2 * 2 * 2  # methods x presets x datasets
    out = Path(cfg.output)
    assert len({c.folder(out) for c in grid}) == 8  # a preset is its own folder
    runs = {(c.method, c.dataset, c.preset): run_config(cfg, c, "r", c.folder(out)) for c in grid}
    assert runs["memorybank", "a", "anomed"].data.n_val == 3
    assert runs["memorybank", "b", "anomed"].data.n_val == 5
    assert runs["mvfa", "b", "reference"].train.target_fpr == 0.2
    assert runs["mvfa", "b", "reference"].preset == "reference"
    assert runs["mvfa", "a", "anomed"].method_args == {"lr": 0.0005}


@pytest.mark.parametrize("name", ["bmad.yaml", "phantom.yaml"])
def test_the_shipped_grids_are_valid(name):
    cfg = load_bench_config(EXAMPLES / name, {})
    check_grid(cfg)  # every cell's run config checked; no data read
    assert len(list(cells(cfg))) == (3 * 6 * 4 * 3 if name == "bmad.yaml" else 8)


def test_failed_cells_are_rows_in_results_tables_and_report(tmp_path):
    """One finished and one failed cell (records as the engines write them, no training)."""
    cfg = BenchConfig(
        methods=["memorybank"],
        datasets={"good": "g", "empty": "e"},
        ks=[2],
        seeds=[0],
        output=str(tmp_path),
    )
    write_json(tmp_path / "bench.json", asdict(cfg))
    good = Cell("memorybank", {}, "good", 2, 0)
    record = failed_record(cfg, good, tmp_path, "")
    record.update(status="ok", image_auroc=0.75, pixel_auroc=0.6, epochs=0, image_size=64)
    record.update(selected_by="val", protocol="standard", n_test=6, class_name="good")
    write_json(good.folder(tmp_path) / "cell.json", record)
    empty = Cell("memorybank", {}, "empty", 2, 0)
    error = "e: unknown dataset layout. Fix: arrange the data as train/normal/ ..."
    write_json(empty.folder(tmp_path) / "failed.json", failed_record(cfg, empty, tmp_path, error))

    write_results(tmp_path)
    rows = {r["dataset"]: r for r in csv.DictReader(open(tmp_path / "results.csv"))}
    assert rows["good"]["status"] == "ok" and rows["good"]["image_auroc"] == "0.75"
    assert rows["empty"]["status"] == "failed" and rows["empty"]["error"] == error
    assert rows["empty"]["image_auroc"] == ""

    write_report(tmp_path)
    tables = (tmp_path / "tables.md").read_text()
    assert "1 of 2 cells FAILED" in tables and "## Failed cells" in tables
    assert "| memorybank | empty | 2 | 0 | anomed | e: unknown dataset layout" in tables
    assert "| failed | 75.0 (n=1) |" in tables  # the empty column says failed, not "—"
    html = (tmp_path / "report.html").read_text()
    assert "Failed cells" in html and "unknown dataset layout" in html
    assert 'class="failed">failed</td>' in html
