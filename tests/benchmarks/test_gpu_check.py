"""The prepared GPU run (benchmarks/gpu_check.py) works end to end before a GPU is lent."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_dry_run_runs_every_step(tmp_path):
    out = tmp_path / "gpu.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gpu_check.py"),
            "--dry-run",
            "--output",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    steps = {s["step"]: s["state"] for s in result["steps"]}
    assert all(state == "ok" for state in steps.values()), steps
    assert {"env", "bf16 metrics", "serve", "onnx", "adapt mediclip", "adapt mvfa"} <= set(steps)
    variants = {row["variant"] for row in result["speed"]["mediclip"]}
    assert variants == {"autocast", "bf16_weights", "bf16_weights+compile"}
    assert result["serve"]["result"]["results"]["batched"]["errors"] == 0
    assert set(result["targets"]) == {
        "mediclip_img_per_s_b128",
        "mediclip_adapt_s",
        "mvfa_adapt_s",
        "adapt_peak_gib",
    }
    assert result["random_init"] is True
