"""Every hostile input of the corpus through `anomed predict`: a bad input is one error row
naming it with a fix, an odd but valid one is scored, and the good inputs beside them are
always scored and written; no traceback, no hang, nothing written outside the output folder.

Default suite: the corpus in a few mixed batches (one predict call each, good images first).
Slow suite: every case alone (exit 1: its only input failed; 0: scored) and with --strict.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import pytest
from fuzz_corpus import INPUT_CASES, InputCase, good_png
from fuzz_helpers import assert_clean_error, changed_outside, run_cli, tree_state

from anomed.engine.predict import display_path, read_predictions

FAST = [c for c in INPUT_CASES if not c.slow]
SLOW = [c for c in INPUT_CASES if c.slow]
CHUNK = 40  # <= 50 rows per call, so predict prints one line per input


@dataclass
class Batch:
    code: int
    out: str
    err: str
    out_dir: Path
    rows: dict[str, dict]  # display name -> row
    inputs: dict[str, Path]  # case id -> path written
    goods: list[Path]
    changed: list[str]


def _chunks(cases: list[InputCase]) -> list[list[InputCase]]:
    return [cases[i : i + CHUNK] for i in range(0, len(cases), CHUNK)]


def run_batch(run: Path, root: Path, cases: list[InputCase], *extra: str) -> Batch:
    """Write `cases` (one folder each) and three good PNGs; score them in one predict call."""
    goods = [good_png(root / "good", f"good{i}.png", seed=i) for i in range(3)]
    inputs = {}
    for case in cases:
        folder = root / "cases" / case.id
        folder.mkdir(parents=True)
        inputs[case.id] = case.write(folder)
    before = tree_state(root)
    out_dir = root / "out"
    result = run_cli(["-q", "predict", run, *goods, *inputs.values(), "-o", out_dir, *extra])
    changed = changed_outside(before, tree_state(root), out_dir)
    rows = {r["file"]: r for r in read_predictions(out_dir)} if out_dir.is_dir() else {}
    return Batch(result.code, result.out, result.err, out_dir, rows, inputs, goods, changed)


@pytest.fixture(scope="module")
def batches(fuzz_run, tmp_path_factory) -> dict[str, Batch]:
    """case id -> the batch that scored it (the corpus in chunks of <= 40 cases)."""
    by_case = {}
    for n, chunk in enumerate(_chunks(FAST)):
        batch = run_batch(fuzz_run, tmp_path_factory.mktemp(f"batch{n}"), chunk)
        by_case.update({case.id: batch for case in chunk})
    return by_case


def check_good_inputs(batch: Batch) -> None:
    for good in batch.goods:
        row = batch.rows[display_path(good)]
        assert row["status"] == "ok" and row["decision"] in ("normal", "abnormal")
        assert (batch.out_dir / row["overlay"]).is_file()


def check_case(batch: Batch, case: InputCase) -> dict:
    """The case's row: scored (ok) or one error naming it with a fix; printed on one line."""
    name = display_path(batch.inputs[case.id])
    assert name in batch.rows, (name, sorted(batch.rows)[:5])
    row = batch.rows[name]
    if case.ok:
        assert row["status"] == "ok", row["error"]
        assert row["decision"] in ("normal", "abnormal") and math.isfinite(row["score"])
        assert (batch.out_dir / row["overlay"]).is_file()
        assert f"{name}: score " in batch.out
    else:
        assert row["status"] == "error" and row["decision"] is None and row["score"] is None
        error = row["error"]
        assert "fix" in error.lower(), error
        assert case.fragment.lower() in (error + name).lower(), (case.fragment, error)
        line = f"{name}: error: {error}"
        assert batch.out.count(line) == 1 and "\n" not in line
    return row


@pytest.mark.parametrize("case", FAST, ids=lambda c: c.id)
def test_hostile_input_in_a_mixed_batch(batches, case):
    batch = batches[case.id]
    check_case(batch, case)
    check_good_inputs(batch)


def test_batches_exit_0_with_counts_and_write_nothing_outside(batches):
    for batch in {id(b): b for b in batches.values()}.values():
        assert batch.code == 0 and "Traceback" not in batch.err, batch.err[-500:]
        assert batch.changed == []
        n_failed = sum(r["status"] == "error" for r in batch.rows.values())
        n = len(batch.rows)
        assert f"{n - n_failed} of {n} inputs scored" in batch.out
        assert f"{n_failed} failed" in batch.out
        with open(batch.out_dir / "predictions.csv", newline="", encoding="utf-8") as fh:
            assert len(list(csv.DictReader(fh))) == n  # every row also in the CSV


def test_strict_makes_any_failure_exit_1_and_still_writes_everything(fuzz_run, tmp_path):
    cases = [c for c in FAST if c.id in ("image-truncated-png", "nifti-all-zero")]
    batch = run_batch(fuzz_run, tmp_path, cases, "--strict")
    assert batch.code == 1 and "2 of 5 inputs failed" in batch.err
    check_good_inputs(batch)
    for case in cases:
        check_case(batch, case)


@pytest.mark.slow
@pytest.mark.parametrize("case", FAST + SLOW, ids=lambda c: c.id)
def test_hostile_input_alone(fuzz_run, tmp_path, case):
    """Alone, a bad input is the whole batch: exit 1, its line, the tables still written."""
    folder = tmp_path / "in"
    folder.mkdir()
    path = case.write(folder)
    before = tree_state(tmp_path)
    out_dir = tmp_path / "out"
    result = run_cli(["-q", "predict", fuzz_run, path, "-o", out_dir])
    assert "Traceback" not in result.err
    assert changed_outside(before, tree_state(tmp_path), out_dir) == []
    if case.unlisted:  # nothing to score at all: a usage error, before any work
        assert_clean_error(result, "no images to score", case.fragment)
        assert not out_dir.exists()
        return
    batch = Batch(result.code, result.out, result.err, out_dir, {}, {case.id: path}, [], [])
    batch.rows = {r["file"]: r for r in read_predictions(out_dir)}
    check_case(batch, case)
    if case.ok:
        assert result.code == 0
    else:
        assert result.code == 1 and "1 of 1 inputs failed" in result.err
