"""Inputs unlike the detector's training images under `--domain-check refuse`: each is one error
row (one line, with the fix), never a decision, never a traceback; the others are still scored."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
from fuzz_helpers import assert_clean_error, changed_outside, run_cli, tree_state

from anomed.engine.domain import OUT_OF_DOMAIN


def _write_outsiders(folder) -> list[str]:
    """Images no brain-phantom detector was trained on: noise, blank white, stripes."""
    rng = np.random.default_rng(0)
    images = {
        "noise.png": rng.integers(0, 256, (96, 96), dtype=np.uint8),
        "white.png": np.full((96, 96), 255, np.uint8),
        "stripes.png": np.tile((np.arange(96) // 4 % 2 * 255).astype(np.uint8), (96, 1)),
    }
    for name, image in images.items():
        cv2.imwrite(str(folder / name), image)
    return sorted(images)


def test_refuse_mode_gives_one_error_row_per_outsider(fuzz_run, phantom_root, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    outsiders = _write_outsiders(folder)
    own = sorted((phantom_root / "test" / "normal").iterdir())[0]
    (folder / "own.png").write_bytes(own.read_bytes())
    before = tree_state(tmp_path)
    out = tmp_path / "out"
    result = run_cli(["predict", fuzz_run, folder, "-o", out, "--domain-check", "refuse", "-q"])
    assert result.code == 0 and "Traceback" not in result.err, result.err[-500:]
    assert changed_outside(before, tree_state(tmp_path), out) == []
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in csv.DictReader(open(out / "predictions.csv"))}
    assert rows["own.png"]["status"] == "ok" and rows["own.png"]["in_domain"] == "True"
    for name in outsiders:
        row = rows[name]
        assert row["status"] == "error" and row["decision"] == "" and row["in_domain"] == "False"
        assert OUT_OF_DOMAIN in row["error"] and "Fix:" in row["error"]
        lines = [line for line in result.out.splitlines() if line.startswith(str(folder / name))]
        assert len(lines) == 1 and OUT_OF_DOMAIN in lines[0], lines
    assert f"{len(outsiders)} refused" in result.out
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["n_failed"] == len(outsiders) and summary["domain_check"] == "refuse"


def test_refuse_mode_with_only_outsiders_exits_1_and_writes_every_row(fuzz_run, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    outsiders = _write_outsiders(folder)
    result = run_cli(["predict", fuzz_run, folder, "-o", tmp_path / "out", "--domain-check",
                      "refuse", "-q"])  # fmt: skip
    assert result.code == 1 and "Traceback" not in result.err
    assert f"{len(outsiders)} of {len(outsiders)} inputs failed" in result.err
    assert len(list(csv.DictReader(open(tmp_path / "out" / "predictions.csv")))) == len(outsiders)


def test_an_unknown_domain_check_is_a_usage_error(fuzz_run, phantom_root, tmp_path):
    result = run_cli(["predict", fuzz_run, phantom_root, "-o", tmp_path / "out",
                      "--domain-check", "maybe"])  # fmt: skip
    assert_clean_error(result, "--domain-check")
    assert not (tmp_path / "out").exists()
