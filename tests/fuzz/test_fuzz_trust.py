"""Hostile inputs of the second trust round (issue 23): each gets one clear line or error row,
no traceback, no hang, nothing silent and nothing lost."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fuzz_base import good_png
from fuzz_dicom import DICOM_CASES
from fuzz_helpers import assert_clean_error, run_cli

import anomed
from anomed.engine.predict import read_predictions
from anomed.outputs import _HOST, staged_dir

SRC = Path(anomed.__file__).resolve().parents[1]


def _yes_no(root: Path) -> Path:
    for folder, n in (("no", 6), ("yes", 3)):
        for i in range(n):
            good_png(root / folder, f"{folder}{i}.png", seed=i)
    return root


# ---- data import: a text file named no/notes.jpg ------------------------------------------
def test_import_leaves_out_a_file_that_is_not_an_image_and_says_so(tmp_path):
    raw = _yes_no(tmp_path / "raw")
    (raw / "no" / "notes.jpg").write_text("scanner notes, not pixels\n")
    (raw / "yes" / "readme.txt").write_text("labels\n")
    out = tmp_path / "out"
    result = run_cli(["data", "import", raw, "--from", "yes-no", "-o", out])
    assert result.code == 0 and "Traceback" not in result.err, result.err
    line = next(x for x in result.out.splitlines() if x.startswith("wrote"))
    assert "LEFT OUT 2 files that are not images" in line
    assert "no/notes.jpg (not a readable image" in line and "yes/readme.txt" in line
    assert "test/normal 3" in line and "train/normal 3" in line  # the 6 real normals only
    assert not list(out.rglob("notes.jpg"))
    listed = (out / "import_left_out.txt").read_text()
    assert "no/notes.jpg\tnot a readable image" in listed


def test_import_of_only_non_images_says_why_nothing_is_left(tmp_path):
    raw = tmp_path / "raw"
    for folder in ("yes", "no"):
        (raw / folder).mkdir(parents=True)
        (raw / folder / "x.png").write_bytes(b"not a png")
    result = run_cli(["data", "import", raw, "--from", "yes-no", "-o", tmp_path / "out"])
    assert_clean_error(result, "no PNG/JPEG", "x.png", "not a readable image", fix=False)


# ---- a DICOM with a garbage JPEG 2000 payload: pydicom's logger, no traceback --------------
@pytest.mark.slow
def test_third_party_logger_prints_one_line_not_a_traceback(fuzz_run, tmp_path):
    case = next(c for c in DICOM_CASES if c.name == "jpeg2000-garbage")
    series = case.write(tmp_path)
    out = tmp_path / "pred"
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    argv = [sys.executable, "-m", "anomed.cli", "-q", "predict", fuzz_run, series, "-o", out]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 1  # its only input failed
    assert "Traceback" not in done.stderr and 'File "' not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) <= 2, done.stderr  # pydicom's line + ours
    (row,) = read_predictions(out)
    assert row["status"] == "error" and "cannot decode DICOM pixel data" in row["error"]


# ---- wrong-way messages ---------------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.mark.parametrize("kind", ["pickle", "torch-zip"])
def test_a_pickle_as_pretrained_is_refused_unread_naming_safetensors(
    kind, phantom_root, tmp_path, monkeypatch
):
    path = tmp_path / "weights.pt"
    if kind == "pickle":
        path.write_bytes(pickle.dumps(_Evil(), protocol=2))
    else:
        torch.save({"visual.proj": torch.zeros(2)}, path)
    argv = ["-q", "train", "--data", phantom_root, "--k", "2", "--pretrained", path]
    argv += ["-o", tmp_path / "r"]
    monkeypatch.chdir(tmp_path)  # where the pickle's command would leave its mark
    line = assert_clean_error(run_cli(argv), "weights.pt", "safetensors")
    assert ("pickle" if kind == "pickle" else "torch.save zip archive") in line
    assert "offline" not in line and not (tmp_path / "PWNED").exists()


def _edited_copy(run: Path, tmp_path: Path, old: str, new: str) -> Path:
    from anomed.engine.checkpoint import CONFIG, MANIFEST, WEIGHTS, sha256_file

    copy = tmp_path / "edited"
    copy.mkdir()
    for name in (WEIGHTS, CONFIG):
        (copy / name).write_bytes((run / name).read_bytes())
    text = (copy / CONFIG).read_text()
    assert old in text
    (copy / CONFIG).write_text(text.replace(old, new))
    sums = {name: sha256_file(copy / name) for name in (WEIGHTS, CONFIG)}
    (copy / MANIFEST).write_text(json.dumps({"sha256": sums}))  # a deliberate, consistent edit
    return copy


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("model: anomed-tiny\n", "model: anomed-tiny-b32\n", "backbone.model 'anomed-tiny-b32'"),
        ("init_seed: 0\n", "init_seed: 7\n", "init_seed 7"),
    ],
)
def test_an_edited_backbone_config_is_named_as_the_mismatch(fuzz_run, tmp_path, old, new, named):
    run = _edited_copy(fuzz_run, tmp_path, old, new)
    image = good_png(tmp_path / "in")
    result = run_cli(["-q", "predict", run, image, "-o", tmp_path / "out"])
    line = assert_clean_error(result, named, "is not the one these trained weights")
    assert "torch version" not in line


def test_data_phantom_names_the_cli_flag(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep.txt").write_text("mine")
    line = assert_clean_error(run_cli(["data", "phantom", "-o", tmp_path / "d"]), "--overwrite")
    assert "pass --overwrite" in line
    assert (tmp_path / "d" / "keep.txt").read_text() == "mine"


# ---- predict on more than 50 inputs: failures are always printed -----------------------------
def test_predict_on_many_inputs_prints_every_failure(fuzz_run, tmp_path):
    goods = [good_png(tmp_path / "in", f"g{i:02d}.png", seed=i) for i in range(49)]
    bads = []
    for i in range(3):
        bads.append(tmp_path / "in" / f"bad{i}.png")
        bads[-1].write_bytes(b"hello, not pixels\n" * 4)
    result = run_cli(["-q", "predict", fuzz_run, tmp_path / "in", "-o", tmp_path / "out"])
    assert result.code == 0 and len(goods) + len(bads) > 50
    printed = result.out.splitlines()
    for bad in bads:
        assert sum(line.startswith(f"{bad}: error: ") for line in printed) == 1, printed[:5]
    assert not any("g00.png: score" in line for line in printed)  # ok rows: not one per line


def test_failure_lines_are_capped_with_the_rest_counted(tmp_path):
    from anomed.engine.predict import PredictReport

    rows = [{"file": f"f{i}.png", "status": "error", "error": "broken. Fix: x"} for i in range(25)]
    rows += [{"file": "ok.png", "status": "ok", "score": 0.5, "decision": "normal"}] * 40
    lines = PredictReport(tmp_path, rows).summary_lines(per_row=False)
    assert sum(": error: " in line for line in lines) == 20
    assert "5 more failed inputs in predictions.json" in lines


# ---- a killed train leaves a partial folder: the next run cleans up after it ---------------
def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_partials_of_gone_processes_are_removed_and_others_named(tmp_path, recwarn):
    target = tmp_path / "run"
    dead = tmp_path / f".run.partial-{_dead_pid()}@{_HOST}-0a0a0a"
    alive = tmp_path / f".run.partial-{os.getpid()}@{_HOST}-0b0b0b"  # a run still writing
    older = tmp_path / ".run.partial-0c0c0c0c0c0c"  # named by an older anomed: cannot tell
    for folder in (dead, alive, older):
        (folder / "sub").mkdir(parents=True)
    with staged_dir(target) as stage:
        (stage / "x.txt").write_text("new")
    assert not dead.exists() and alive.is_dir() and older.is_dir()
    (warning,) = [w for w in recwarn if "partial folder" in str(w.message)]
    assert older.name in str(warning.message) and "Fix: if no run is writing there" in str(
        warning.message
    )


def test_a_killed_writer_leaves_a_partial_the_next_train_removes(phantom_root, tmp_path):
    """A real kill: a process SIGKILLs itself while staging the run folder (as a train killed
    during its save); the next `train` into the same place removes what it left."""
    out = tmp_path / "run"
    code = (
        "import os, signal, sys; from anomed.outputs import staged_dir\n"
        "with staged_dir(sys.argv[1]) as stage:\n"
        "    (stage / 'model.safetensors').write_bytes(b'half')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run([sys.executable, "-c", code, str(out)], env=env, timeout=120)
    assert done.returncode == -9
    (left,) = tmp_path.glob(".run.partial-*")
    assert "@" in left.name and not out.exists()  # pid@host of the killed writer
    argv = ["-q", "train", "--data", phantom_root, "--k", "2", "--epochs", "1"]
    result = run_cli([*argv, "--image-size", "64", "--set", "data.n_val=2", "-o", out])
    assert result.code == 0, result.err
    assert not left.exists() and (out / "model.safetensors").stat().st_size > 100
