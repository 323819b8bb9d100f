"""`anomed bench run --engine ray` on a local Ray (2 CPUs) started by this module: the tiny
phantom grid (examples/grids/phantom.yaml: 2 methods x 2 datasets x 2 seeds) gives the local
engine's numbers; a worker killed mid-cell leaves no partial cell, and each engine resumes the
other's folder, running only what is missing."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from ray_local import local_ray  # noqa: E402

import anomed.engine.bench as bench  # noqa: E402
from anomed.data.phantoms.organs import BmadPhantomConfig, write_bmad_phantoms  # noqa: E402
from anomed.engine.bench import load_bench_config, run_bench  # noqa: E402
from anomed.metrics import METRIC_KEYS  # noqa: E402
from anomed.ray.bench import CRASH_ENV, RayBenchConfig, ray_engine  # noqa: E402

pytestmark = pytest.mark.slow
GRID = Path(__file__).parents[2] / "examples" / "grids" / "phantom.yaml"


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("crash")


@pytest.fixture(scope="module", autouse=True)
def ray_session(crash_dir):
    with local_ray({CRASH_ENV: str(crash_dir)}):
        yield


@pytest.fixture(scope="module")
def organs(tmp_path_factory):
    root = tmp_path_factory.mktemp("bmad")
    cfg = BmadPhantomConfig(organs=("brain", "liver"), n_valid=(6, 6), n_test=(4, 4), size=64)
    write_bmad_phantoms(root, cfg)
    return {"brain": str(root / "Brain_AD"), "liver": str(root / "Liver_AD")}


def _grid(organs, out, **extra):
    return load_bench_config(GRID, {"datasets": organs, "output": str(out), **extra})


def _rows(out):
    with open(out / "results.csv", newline="") as fh:
        return {r["cell_dir"]: r for r in csv.DictReader(fh)}


def _stamps(out):
    return {p: p.stat().st_mtime_ns for p in out.glob("cells/**/cell.json")}


def _quiet(_):
    return None


def test_ray_grid_equals_local_and_each_resumes_the_other(organs, tmp_path, monkeypatch):
    engine = ray_engine(RayBenchConfig(cpus_per_cell=1), progress=False)
    run_bench(_grid(organs, tmp_path / "ray"), False, _quiet, engine=engine, report=True)
    run_bench(_grid(organs, tmp_path / "local"), False, _quiet)
    ray_rows, local_rows = _rows(tmp_path / "ray"), _rows(tmp_path / "local")
    assert len(ray_rows) == 8 and set(ray_rows) == set(local_rows)
    for cell, row in ray_rows.items():
        assert row["status"] == "ok", row["error"]
        for key in (*METRIC_KEYS, "n_test", "epochs", "selected_by", "k_abnormal"):
            assert row[key] == local_rows[cell][key], (cell, key)  # the same text in the CSV
    assert (tmp_path / "ray" / "report.html").is_file()

    stamps = _stamps(tmp_path / "ray")
    monkeypatch.setattr(bench, "run_cell", lambda *a, **k: pytest.fail("a cell trained again"))
    run_bench(_grid(organs, tmp_path / "ray"), False, _quiet)  # local rerun of the Ray folder
    assert _stamps(tmp_path / "ray") == stamps


def test_killed_worker_leaves_no_partial_cell_and_rerun_runs_only_it(organs, crash_dir, tmp_path):
    out = tmp_path / "b"
    grid = _grid(organs, out, methods=["memorybank"], seeds=[0])
    (crash_dir / "crash").write_text("kill the first worker that finishes training a cell")
    no_retry = ray_engine(RayBenchConfig(retries=0), progress=False)
    run_bench(grid, False, _quiet, engine=no_retry)
    assert (crash_dir / "crashed").exists() and not (crash_dir / "crash").exists()
    rows = _rows(out)
    failed = [c for c, r in rows.items() if r["status"] == "failed"]
    assert len(rows) == 2 and len(failed) == 1
    assert "worker running this cell died" in rows[failed[0]]["error"]
    assert not (out / failed[0] / "cell.json").exists()  # trained, never recorded as done
    stamps = _stamps(out)

    (crash_dir / "crashed").unlink()
    (crash_dir / "crash").write_text("kill again: a retry finishes the cell")
    run_bench(grid, False, _quiet, engine=ray_engine(RayBenchConfig(retries=1), progress=False))
    assert (crash_dir / "crashed").exists()
    after = _stamps(out)
    assert {p: after[p] for p in stamps} == stamps  # the finished cell was not run again
    assert len(after) == 2 and all(r["status"] == "ok" for r in _rows(out).values())
    (crash_dir / "crashed").unlink()


def test_cli_ray_grid_with_tracking(organs, tmp_path, capsys):
    from anomed.cli import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "cli"
    argv = ["-q", "bench", "run", "--grid", str(GRID), "--methods", "memorybank", "--seeds", "0"]
    argv += ["--datasets", *(f"{k}={v}" for k, v in organs.items()), "-o", str(out)]
    assert main([*argv, "--engine", "ray", "--cpus-per-cell", "1", "--tracking", uri]) == 0
    assert "bench: 2/2 done, 0 running, 0 failed" in capsys.readouterr().out
    mlflow = pytest.importorskip("mlflow")
    client = mlflow.MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("anomed").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(parents) == 1 and len(runs) == 3
    assert {r.data.tags["dataset"] for r in runs if r not in parents} == {"brain", "liver"}
