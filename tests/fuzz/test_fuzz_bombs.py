"""Decompression bombs and huge images (slow, a real subprocess): refused from the header or
scored with bounded memory, never a hang. The issue's run saw 18-20 GB for 131-144 Mpx PNGs of
~130 kB and hangs past 3 minutes for 12000 x 12000 and 65535 x 2000 images."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_corpus import IMAGE_CASES, good_png

from anomed.engine.predict import display_path, read_predictions

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[2] / "src")
PEAK_LIMIT_MB = 3000  # python + torch + model is ~1 GB; a decoded 144 Mpx RGB float is 1.7 GB
# runs predict, then writes its own peak resident memory (MB) to ANOMED_FUZZ_PEAK. VmHWM, not
# getrusage: Linux carries the parent's high-water mark into ru_maxrss across vfork + exec, so
# a child of a big pytest process would report the parent's peak (CI saw 4.9 GB for 1.4 GB).
CHILD = """
import os, re, sys
from anomed.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
peak = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) / 1024
open(os.environ["ANOMED_FUZZ_PEAK"], "w").write(str(peak))
sys.exit(code)
"""
BIG = {c.name: c for c in IMAGE_CASES if c.slow}


def test_bombs_are_refused_and_a_large_image_is_scored_in_bounded_memory(fuzz_run, tmp_path):
    good = good_png(tmp_path / "in", "good.png")
    inputs = {name: case.write(tmp_path / "in") for name, case in BIG.items()}
    sizes = {name: path.stat().st_size for name, path in inputs.items()}
    assert max(sizes.values()) < 1_000_000  # the bombs are small files
    out, peak = tmp_path / "out", tmp_path / "peak"
    env = dict(os.environ, PYTHONPATH=SRC, ANOMED_FUZZ_PEAK=str(peak))
    argv = [sys.executable, "-c", CHILD, "-q", "predict", str(fuzz_run), str(good)]
    argv += [*map(str, inputs.values()), "-o", str(out)]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-2000:]
    rows = {r["file"]: r for r in read_predictions(out)}
    assert rows[display_path(good)]["status"] == "ok"
    for name, path in inputs.items():
        row, case = rows[display_path(path)], BIG[name]
        assert (row["status"] == "ok") == case.ok, row
        if not case.ok:
            assert "ANOMED_MAX_PIXELS" in row["error"] and "Fix" in row["error"]
    assert float(peak.read_text()) < PEAK_LIMIT_MB
    from PIL import Image

    for row in rows.values():  # overlays are drawn at a bounded size
        if row["overlay"]:
            with Image.open(out / row["overlay"]) as overlay:
                assert max(overlay.size) <= 2 * 1024 + 200


def test_the_pixel_limit_can_be_raised_and_lowered(fuzz_run, tmp_path):
    good = good_png(tmp_path / "in", "good.png")
    env = dict(os.environ, PYTHONPATH=SRC, ANOMED_MAX_PIXELS="100")
    argv = [sys.executable, "-m", "anomed.cli", "-q", "predict", str(fuzz_run), str(good)]
    done = subprocess.run([*argv, "-o", str(tmp_path / "o1")], env=env, capture_output=True)
    assert done.returncode == 1  # 48 x 40 > 100 pixels: its only input refused
    row = read_predictions(tmp_path / "o1")[0]
    assert "limit of 100 pixels" in row["error"]
    env["ANOMED_MAX_PIXELS"] = "lots"
    done = subprocess.run([*argv, "-o", str(tmp_path / "o2")], env=env, capture_output=True)
    summary = json.loads((tmp_path / "o2" / "predictions.json").read_text())
    assert summary["n_failed"] == 1 and "ANOMED_MAX_PIXELS='lots'" in str(summary)
