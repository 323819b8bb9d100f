"""Interruptions (slow, real subprocesses): kill -9 a retraining into an existing run at every
file rename and at random moments - eval/predict then see the old complete run or the new
complete run, never a mix; Ctrl-C a predict - exit 130, one line, the rows so far kept."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from fuzz_corpus import good_png
from fuzz_helpers import run_cli

from anomed.engine.checkpoint import load_checkpoint
from anomed.engine.predict import read_predictions

pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[2] / "src")
# The child counts file renames (os.replace) and the folder swap (outputs._exchange) and
# SIGKILLs itself at point number ANOMED_FUZZ_KILL_AT; with 0 it writes the count it reached.
CHILD = """
import atexit, os, signal, sys
kill_at = int(os.environ["ANOMED_FUZZ_KILL_AT"])
count = 0
def point():
    global count
    count += 1
    if count == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
real_replace = os.replace
def replace(a, b, **kw):
    point()
    return real_replace(a, b, **kw)
os.replace = replace
from anomed import outputs
real_exchange = outputs._exchange
def exchange(a, b):
    point()
    done = real_exchange(a, b)
    point()
    return done
outputs._exchange = exchange
atexit.register(lambda: open(os.environ["ANOMED_FUZZ_COUNT"], "w").write(str(count)))
from anomed.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def train_argv(data: Path, out: Path, seed: int) -> list[str]:
    return ["-q", "train", "--data", str(data), "--k", "2", "--epochs", "1", "--image-size",
            "64", "--seed", str(seed), "--set", "data.n_val=2", "-o", str(out)]  # fmt: skip


def retrain(data: Path, run: Path, kill_at: int, counter: Path) -> subprocess.CompletedProcess:
    """Retrain into `run` (a seed of its own, so the new run differs from every earlier one)."""
    argv = [sys.executable, "-c", CHILD, *train_argv(data, run, seed=100 + kill_at), "--overwrite"]
    env = _env(ANOMED_FUZZ_KILL_AT=str(kill_at), ANOMED_FUZZ_COUNT=str(counter))
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=600)


def assert_whole_run(run: Path, old_manifest: str, image: Path, tmp: Path) -> str:
    """The folder loads (manifest, weights, config agree) and scores; 'old' or 'new'."""
    assert run.is_dir(), sorted(p.name for p in run.parent.iterdir())
    load_checkpoint(run, "cpu")
    assert {"model.safetensors", "config.yaml", "manifest.json", "shots.yaml"} <= {
        p.name for p in run.iterdir()
    }
    out = tmp / f"predict-{time.monotonic_ns()}"
    result = run_cli(["-q", "predict", run, image, "-o", out])
    assert result.code == 0 and [r["status"] for r in read_predictions(out)] == ["ok"]
    return "old" if (run / "manifest.json").read_text() == old_manifest else "new"


@pytest.fixture
def old_run(phantom_root, tmp_path) -> tuple[Path, str, Path]:
    run = tmp_path / "run"
    assert run_cli(train_argv(phantom_root, run, seed=0)).code == 0
    image = sorted((phantom_root / "test" / "normal").iterdir())[0]
    return run, (run / "manifest.json").read_text(), image


def test_kill_9_at_the_renames_of_a_retrain_leaves_old_or_new(phantom_root, old_run, tmp_path):
    run, manifest, image = old_run
    counter = tmp_path / "count"
    done = retrain(phantom_root, run, 0, counter)  # a full retrain counts the kill points
    assert done.returncode == 0, done.stderr[-2000:]
    points = int(counter.read_text())
    assert points >= 4  # weights, config, manifest, history ... and the swap
    assert (run / "manifest.json").read_text() != manifest
    states = []
    kill_points = sorted({1, points // 2, points - 1, points})  # in the stage, at the swap
    for kill_at in kill_points:
        manifest = (run / "manifest.json").read_text()  # the run before this retrain
        done = retrain(phantom_root, run, kill_at, counter)
        assert done.returncode == -signal.SIGKILL, (kill_at, done.stderr[-1000:])
        states.append(assert_whole_run(run, manifest, image, tmp_path))
    # killed before the swap: the previous run, whole; after it: the new one, whole
    assert states == ["old"] * (len(kill_points) - 1) + ["new"], states


def test_kill_9_at_random_moments_leaves_old_or_new(phantom_root, old_run, tmp_path):
    run, old_manifest, image = old_run
    rng = random.Random(14)
    argv = [sys.executable, "-m", "anomed.cli", *train_argv(phantom_root, run, 2), "--overwrite"]
    for _ in range(3):
        child = subprocess.Popen(
            argv, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        time.sleep(rng.uniform(1.0, 8.0))
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=60)
        state = assert_whole_run(run, old_manifest, image, tmp_path)
        old_manifest = (run / "manifest.json").read_text() if state == "new" else old_manifest


def test_ctrl_c_during_predict_exits_130_and_keeps_the_rows_so_far(fuzz_run, tmp_path):
    for i in range(300):
        good_png(tmp_path / "in", f"scan{i:03d}.png", seed=i)
    out = tmp_path / "out"
    argv = [sys.executable, "-m", "anomed.cli", "-q", "predict", str(fuzz_run),
            str(tmp_path / "in"), "-o", str(out), "--batch-size", "1"]  # fmt: skip
    child = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:  # wait until some rows were streamed
        csv_file = out / "predictions.csv"
        if csv_file.is_file() and csv_file.read_text().count("\n") > 3:
            break
        time.sleep(0.2)
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=120)
    err = err.decode("utf-8", "replace")
    assert child.returncode == 130 and "Traceback" not in err, err[-1500:]
    assert err.strip().splitlines()[-1] == "anomed: interrupted"
    rows = read_predictions(out)
    assert 0 < len(rows) < 300 and all(r["status"] == "ok" for r in rows)
    summary = json.loads((out / "predictions.json").read_text())
    assert summary["n_inputs"] == len(rows)
    again = run_cli(["-q", "predict", fuzz_run, tmp_path / "in", "-o", out])
    assert again.code == 2 and "not empty" in again.err  # the partial run is not mixed into
