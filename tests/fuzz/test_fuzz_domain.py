"""Inputs unlike the detector's training images under `--domain-check refuse`: each is one error
row (one line, with the fix), never a decision, never a traceback; the others are still scored."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
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


def _resign(run) -> None:
    """Re-sign the manifest, so only the guard's own checks can catch the damage."""
    from anomed.engine.checkpoint import CONFIG, MANIFEST, WEIGHTS, sha256_file

    manifest = json.loads((run / MANIFEST).read_text())
    manifest["sha256"] = {name: sha256_file(run / name) for name in (WEIGHTS, CONFIG)}
    (run / MANIFEST).write_text(json.dumps(manifest))


def _drop_guard_tensors(run) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(run / "model.safetensors"))
    kept = {k: v for k, v in tensors.items() if not k.startswith("domain_guard.bank")}
    save_file(kept, str(run / "model.safetensors"))


def _negative_threshold(run) -> None:
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    cfg["domain"]["threshold"] = -1.0
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))


def _nan_bank(run) -> None:
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(run / "model.safetensors"))
    tensors["domain_guard.bank"] = tensors["domain_guard.bank"] * np.nan
    save_file(tensors, str(run / "model.safetensors"))


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (_drop_guard_tensors, "domain guard"),
        (_negative_threshold, "domain.threshold"),
        (_nan_bank, "non-finite"),
    ],
    ids=["guard-tensor-missing", "guard-threshold-negative", "guard-bank-nan"],
)
def test_a_damaged_guard_is_refused_in_one_line(run_copy, phantom_root, tmp_path, damage, fragment):
    damage(run_copy)
    _resign(run_copy)
    result = run_cli(["predict", run_copy, phantom_root / "test", "-o", tmp_path / "out"])
    assert_clean_error(result, fragment)
    assert not (tmp_path / "out").exists()
