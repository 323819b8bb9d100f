"""`bench run` with a dataset that cannot be trained on (an empty folder): its cells are rows
with status "failed" and their error in results.csv, shown in tables.md and report.html; the
exit status says cells failed (3), and the last line names the data's problem and its fix,
never "rerun" (rerunning the same data fails the same way)."""

from __future__ import annotations

import csv

from fuzz_helpers import assert_clean_error, names_a_fix, run_cli

RAN_WITH_FAILURES = 3


def _bench(out, *datasets):
    argv = ["-q", "bench", "run", "--methods", "memorybank", "--datasets", *datasets]
    return run_cli([*argv, "--ks", "2", "--seeds", "0", "--image-size", "64", "-o", out])


def _assert_failure_reported(result, out, empty) -> None:
    assert result.code == RAN_WITH_FAILURES, (result.code, result.err[-600:])
    assert "Traceback" not in result.err
    last = result.err_lines[-1]
    assert last.startswith("anomed: 1 cells failed") and str(empty) in last, last
    assert names_a_fix(last) and "rerun" not in last.lower() and "resume" not in last.lower()
    rows = [r for r in csv.DictReader(open(out / "results.csv")) if r["dataset"] == "empty"]
    assert len(rows) == 1 and rows[0]["status"] == "failed" and str(empty) in rows[0]["error"]
    assert not list(out.glob("cells/**/empty/**/cell.json"))  # nothing recorded as done
    tables = (out / "tables.md").read_text()
    assert "## Failed cells" in tables and "| memorybank | empty |" in tables
    html = (out / "report.html").read_text()
    assert "Failed cells" in html and "unknown dataset layout" in html


def test_one_good_and_one_empty_dataset(phantom_root, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "b"
    result = _bench(out, f"good={phantom_root}", f"empty={empty}")
    _assert_failure_reported(result, out, empty)
    rows = {r["dataset"]: r for r in csv.DictReader(open(out / "results.csv"))}
    assert rows["good"]["status"] == "ok" and rows["good"]["image_auroc"]


def test_only_an_empty_dataset(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "b"
    _assert_failure_reported(_bench(out, f"empty={empty}"), out, empty)


def test_ray_flags_without_ray_and_a_bad_address_are_one_line(phantom_root, tmp_path):
    argv = ["-q", "bench", "run", "--methods", "memorybank", "--datasets", f"p={phantom_root}"]
    argv += ["--ks", "2", "--seeds", "0", "-o", tmp_path / "b"]
    assert_clean_error(run_cli([*argv, "--retries", "3"]), "--retries", "--engine ray")
    bad = run_cli([*argv, "--engine", "ray", "--address", "not an address"])
    assert_clean_error(bad, "address", "ray://", fix=False)
    assert not (tmp_path / "b").exists()
