"""`anomed predict --engine ray` on a local Ray (2 CPUs) started once for this module: the same
numbers as the local engine, resume, error rows, volumes, and a model actor killed mid-run."""

import json
import os

import nibabel as nib
import numpy as np
import pytest

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from ray_local import local_ray  # noqa: E402

from anomed.cli import main  # noqa: E402
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset  # noqa: E402
from anomed.ray import RayPredictConfig, predict_ray  # noqa: E402
from anomed.ray.stages import CRASH_ENV  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def crash_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("crash")


@pytest.fixture(scope="module", autouse=True)
def ray_session(crash_dir):
    with local_ray({CRASH_ENV: str(crash_dir)}):
        yield


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """200 phantom test images at 64 px (100 normal, 100 abnormal; masks left out)."""
    root = tmp_path_factory.mktemp("archive") / "phantom"
    cfg = PhantomConfig(n_train=12, n_test_normal=100, n_test_abnormal=100, image_size=64, seed=5)
    write_phantom_dataset(root, cfg)
    return root


@pytest.fixture(scope="module")
def checkpoint(archive, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "ckpt"
    argv = ["-q", "train", "--data", str(archive), "--k", "2", "--epochs", "1"]
    argv += ["--image-size", "64", "-o", str(out), "--set", "data.n_val=2"]
    assert main(argv) == 0
    return out


def _rows(out):
    table = pq.read_table(out / "predictions")
    return table.to_pylist()


def test_same_scores_as_local_and_rerun_skips_everything(checkpoint, archive, tmp_path, capsys):
    test = archive / "test"
    assert main(["-q", "predict", str(checkpoint), str(test), "-o", str(tmp_path / "local")]) == 0
    local = {
        r["file"]: r
        for r in json.loads((tmp_path / "local" / "predictions.json").read_text())["predictions"]
    }
    out = tmp_path / "ray"
    argv = ["-q", "predict", str(checkpoint), str(test), "--engine", "ray", "--workers", "2"]
    assert main([*argv, "-o", str(out)]) == 0
    rows = _rows(out)
    assert len(rows) == len(local) == 200
    assert all(r["status"] == "ok" for r in rows)
    diffs = [abs(r["score"] - local[r["path"]]["score"]) for r in rows]
    assert max(diffs) <= 1e-5
    assert all(r["decision"] == local[r["path"]]["decision"] for r in rows)
    assert all(r["in_domain"] == local[r["path"]]["in_domain"] for r in rows)  # the guard too
    summary = json.loads((out / "summary.json").read_text())
    assert summary["totals"] == {
        "rows": 200,
        "ok": 200,
        "error": 0,
        "abnormal": summary["totals"]["abnormal"],
        "out_of_domain": sum(r["in_domain"] is False for r in rows),
    }
    assert summary["this_run"]["excluded"] == 100  # the masks
    shards_before = sorted(p.name for p in (out / "predictions").iterdir())
    capsys.readouterr()
    assert main([*argv, "-o", str(out)]) == 0
    assert "0 inputs written" in capsys.readouterr().out
    again = json.loads((out / "summary.json").read_text())["this_run"]
    assert again["skipped"] == 200 and again["written"] == 0
    assert sorted(p.name for p in (out / "predictions").iterdir()) == shards_before


def _volume(path, shape=(24, 24, 6), seed=0):
    data = np.random.default_rng(seed).random(shape).astype(np.float32)
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(path))


def test_bad_inputs_are_error_rows_volumes_and_maps(checkpoint, archive, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    good = sorted((archive / "test" / "normal").glob("*.png"))[:3]
    for p in good:
        (src / p.name).write_bytes(p.read_bytes())
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    _volume(src / "head.nii.gz")
    (src / "damaged.nii.gz").write_bytes(b"not gzip")
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"path\nin/{good[0].name}\nin/missing.png\n")
    cfg = RayPredictConfig(workers=1, maps=True, progress=False)
    report = predict_ray(
        checkpoint, [str(src), str(manifest), str(tmp_path / "gone")], tmp_path / "o", cfg
    )
    rows = {os.path.basename(r["path"]): r for r in _rows(tmp_path / "o")}
    assert set(rows) == {p.name for p in good} | {
        "broken.png",
        "head.nii.gz",
        "damaged.nii.gz",
        "missing.png",
        "gone",
    }  # good[0] given twice (folder and manifest): one row
    for name in ("broken.png", "damaged.nii.gz", "missing.png", "gone"):
        assert rows[name]["status"] == "error" and rows[name]["error"], name
        assert rows[name]["score"] is None and rows[name]["decision"] is None
    assert "broken.png" in rows["broken.png"]["error"]
    assert rows["missing.png"]["error"].startswith("no such file or folder")
    for p in good:
        row = rows[p.name]
        assert row["status"] == "ok" and row["decision"] in ("normal", "abnormal")
        assert (tmp_path / "o" / row["overlay"]).is_file()
    head = rows["head.nii.gz"]
    assert head["status"] == "ok" and head["kind"] == "volume"
    assert len(head["slice_scores"]) == 6
    assert head["score"] == pytest.approx(max(s["score"] for s in head["slice_scores"]))
    assert nib.load(tmp_path / "o" / head["overlay"]).shape == (24, 24, 6)
    assert report.this_run["error"] == 4 and report.totals["rows"] == 8


def test_killed_actor_batch_is_retried_and_every_input_written_once(
    checkpoint, archive, crash_dir, tmp_path
):
    (crash_dir / "crash").write_text("kill the first actor that scores a batch")
    folder = archive / "test" / "abnormal"
    cfg = RayPredictConfig(workers=2, batch_size=8, block_rows=16, shard_rows=16, progress=False)
    report = predict_ray(checkpoint, [str(folder)], tmp_path / "o", cfg)
    assert (crash_dir / "crashed").exists() and not (crash_dir / "crash").exists()
    rows = _rows(tmp_path / "o")
    paths = [r["path"] for r in rows]
    assert sorted(paths) == sorted(str(p) for p in folder.glob("*.png"))  # each exactly once
    assert all(r["status"] == "ok" for r in rows)
    assert report.this_run["written"] == 100 and report.this_run["ok"] == 100
