"""`anomed bench run`: resumption after a kill, results and report."""

import csv

import pytest
from shared_data import SHARED_DATA

import anomed.engine.bench as bench
from anomed.cli import main
from anomed.engine.bench import BenchConfig, run_bench
from anomed.errors import AnomedError


def _cfg(phantom_root, out):
    return BenchConfig(
        methods=["memorybank"],
        datasets={"phantom": str(phantom_root)},
        ks=[2],
        seeds=[0, 1],
        image_size=112,
        output=str(out),
    )


def test_killed_bench_resumes_without_recomputing(phantom_root, tmp_path, monkeypatch):
    out = tmp_path / "bench"
    real = bench.run_cell
    calls = []

    def dies_on_second(cfg, cell, root, out_dir):
        calls.append(cell.seed)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user kills the bench in the second cell
        return real(cfg, cell, root, out_dir)

    monkeypatch.setattr(bench, "run_cell", dies_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_bench(_cfg(phantom_root, out), progress=False)
    done = sorted(out.glob("cells/**/cell.json"))
    assert len(done) == 1
    stamp = done[0].stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(bench, "run_cell", lambda *a: (calls.append(a[1].seed), real(*a))[1])
    run_bench(_cfg(phantom_root, out), progress=False)
    assert calls == [1]  # only the unfinished cell ran again
    assert done[0].stat().st_mtime_ns == stamp  # the finished one was not touched
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert sorted(int(r["seed"]) for r in rows) == [0, 1]
    assert all(r["weights"] == "random-init" and r["method"] == "memorybank" for r in rows)


@pytest.mark.slow
def test_reduced_grid_with_report(phantom_root, tmp_path, capsys):
    datasets = [f"phantom={phantom_root}"]
    datasets += [
        f"{n}={SHARED_DATA / n}" for n in ("brainmri",) if (SHARED_DATA / n / "samples").is_dir()
    ]
    out = tmp_path / "grid"
    assert (
        main(
            [
                "-q",
                "bench",
                "run",
                "--methods",
                "mediclip",
                "memorybank",
                "winclip+",
                "mvfa",
                "--datasets",
                *datasets,
                "--ks",
                "2",
                "--seeds",
                "0",
                "--epochs",
                "1",
                "--image-size",
                "112",
                "-o",
                str(out),
            ]
        )
        == 0
    )
    html = (out / "report.html").read_text()
    assert "random-init" in html and "<table" in html and "data:image/png;base64" in html
    assert "AUROC" in (out / "tables.md").read_text()
    assert len(list(csv.DictReader(open(out / "results.csv")))) == 4 * len(datasets)


def test_a_bad_ablation_fails_before_any_cell_runs(tmp_path, monkeypatch):
    """A typo in an ablation's method options used to fail cell by cell (logged, skipped)
    after the phantoms were written and earlier cells had trained."""
    monkeypatch.setattr(bench, "run_cell", lambda *a: pytest.fail("a cell ran"))
    cfg = BenchConfig(
        methods=["memorybank"],
        datasets={"phantom": str(tmp_path / "phantom")},
        ks=[2],
        seeds=[0],
        ablations={"memorybank": [{"no_such_option": 1}]},
        output=str(tmp_path / "bench"),
    )
    with pytest.raises(AnomedError, match="bench cell memorybank variant no_such_option=1"):
        run_bench(cfg, progress=False)
    assert not (tmp_path / "bench").exists() and not (tmp_path / "phantom").exists()
