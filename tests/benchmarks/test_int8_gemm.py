"""benchmarks/int8_gemm.py (docs/guides/cpu.md's INT8 ceiling) runs and prints its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_prints_one_row_per_runtime_on_a_small_matmul():
    argv = [sys.executable, str(ROOT / "benchmarks" / "int8_gemm.py"), "--tokens", "16"]
    argv += ["--width", "32", "--hidden", "64", "--repeats", "1", "--threads", "1"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "matmul (16 x 32) x (32 x 64), 1 threads" in proc.stdout
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "x (" in line]
    names = [row.split("|")[1].strip() for row in rows]
    assert names == ["PyTorch fp32", "ONNX Runtime fp32", "ONNX Runtime INT8"]
