"""The Ray engine's parts that need no running Ray: listing, keys, shards, resume, plans, CLI.

The pipeline itself (a local Ray with 2 CPUs) is tested in test_ray_cluster.py (slow)."""

import json
import os
import time

import numpy as np
import pytest

pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from anomed.cli import main  # noqa: E402
from anomed.errors import AnomedError  # noqa: E402
from anomed.ray import shards  # noqa: E402
from anomed.ray.inputs import expand_batch, input_key, key_id, split_inputs  # noqa: E402
from anomed.ray.pipeline import RayPredictConfig, plan_resources  # noqa: E402


def _folder(tmp_path):
    root = tmp_path / "in"
    (root / "sub" / "masks").mkdir(parents=True)
    for name in ("a.png", "sub/b.png", "sub/masks/b_mask.png", ".hidden.png"):
        (root / name).write_bytes(b"x")
    (root / "notes.txt").write_text("not an image")
    return root


def test_listing_matches_collect_inputs_and_marks_done_rows_skipped(tmp_path):
    root = _folder(tmp_path)
    batch = expand_batch({"input": np.array([str(root), str(tmp_path / "gone.png")], object)})
    kinds = dict(zip((os.path.basename(p) for p in batch["path"]), batch["kind"], strict=True))
    assert kinds == {
        "a.png": "image",
        "b.png": "image",
        "b_mask.png": "excluded",
        ".hidden.png": "excluded",
        "notes.txt": "excluded",  # listed as left out, like predict's folder scan
        "gone.png": "input",
    }
    assert all(os.path.isabs(p) for p in batch["path"])
    gone = list(batch["path"]).index(str(tmp_path / "gone.png"))
    assert batch["error"][gone].startswith("no such file or folder")
    done = np.array([key_id(input_key(root / "a.png"))], dtype="S32")
    again = expand_batch({"input": np.array([str(root)], object)}, done=done)
    pairs = zip(again["path"], again["kind"], strict=True)
    skipped = [os.path.basename(p) for p, k in pairs if k == "skipped"]
    assert skipped == ["a.png"]


def test_key_changes_when_the_file_changes(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"one")
    first = input_key(path)
    assert first.startswith(str(path) + "|3|")
    path.write_bytes(b"longer")
    assert input_key(path) != first
    assert input_key(tmp_path / "none.png").endswith("|missing")


def test_manifest_relative_paths_and_missing_column(tmp_path):
    root = _folder(tmp_path)
    manifest = root / "list.csv"
    manifest.write_text("path,label\na.png,0\nsub/b.png,1\n,2\n")
    plain, manifests = split_inputs([str(manifest), str(root / "a.png")], "path")
    assert plain == [str(root / "a.png")] and manifests[0].base == str(root)
    batch = expand_batch({"input": np.array(["a.png", "sub/b.png", None], object)}, base=str(root))
    assert list(batch["path"]) == [str(root / "a.png"), str(root / "sub" / "b.png")]
    with pytest.raises(AnomedError, match="no column 'file' .*columns: path, label.*--path-column"):
        split_inputs([str(manifest)], "file")


def _batch(keys, kind="image", status="ok", score=0.5, overlay=True):
    n = len(keys)
    col = lambda v: np.array([v] * n, dtype=object)  # noqa: E731
    return {
        "source": np.array([os.fsencode(k.split("|")[0]) for k in keys], object),
        "path": np.array([k.split("|")[0] for k in keys], object),
        "kind": col(kind),
        "key": np.array(keys, object),
        "key_id": np.array([key_id(k) for k in keys], object),
        "status": col(status),
        "error": col("" if status == "ok" else "bad"),
        "score": np.full(n, score),
        "decision": col("abnormal" if status == "ok" else ""),
        "slice_scores": col(""),
        "overlay": np.array(
            [f"overlays/{os.path.basename(k.split('|')[0])}" if overlay else "" for k in keys],
            object,
        ),
        "slices": col(""),
        "amap": col(b""),
    }


def test_shards_are_atomic_named_by_keys_and_compacted(tmp_path):
    (tmp_path / shards.SHARDS).mkdir()
    write = lambda b: shards.write_shard(b, str(tmp_path), "rid", 0.4, (None, None))  # noqa: E731
    (tmp_path / "overlays").mkdir()
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / "overlays" / name).write_bytes(b"png")
    first = write(_batch(["/d/a.png|1|1", "/d/b.png|1|1"]))
    assert first["written"][0] == 2 and first["abnormal"][0] == 2
    assert write(_batch(["/d/b.png|1|1", "/d/a.png|1|1"]))["shard"][0] == first["shard"][0]
    write(_batch(["/d/b.png|1|1"]))
    write(_batch(["/d/a.png|1|1"]))  # the same key again, in another shard
    write(_batch(["/d/a.png|1|1", "/d/c.png|1|1"]))
    time.sleep(0.01)  # a later run
    write(_batch(["/d/b.png|2|2"], status="error", overlay=False))  # b changed: newer row wins
    assert not list((tmp_path / shards.SHARDS).glob(".*"))
    assert shards.compact(tmp_path) == 4
    assert sorted(p.name for p in (tmp_path / "overlays").iterdir()) == ["a.png", "c.png"]
    table = shards.read_column_table(tmp_path, ["path", "status", "threshold", "run_id"])
    rows = sorted(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    assert rows == [
        ("/d/a.png", "ok", 0.4, "rid"),
        ("/d/b.png", "error", 0.4, "rid"),
        ("/d/c.png", "ok", 0.4, "rid"),
    ]
    assert pq.read_schema(shards.shard_paths(tmp_path)[0]) == shards.SCHEMA
    done = shards.done_keys(tmp_path, retry_errors=True)
    assert sorted(done.tolist()) == sorted(key_id(f"/d/{n}.png|1|1").encode() for n in "ac")


def test_output_folder_resumes_only_the_same_checkpoint(tmp_path):
    out = tmp_path / "out"
    assert shards.check_output(out, "aaaa", False, []) == out and not out.exists()
    shards.open_output(out, False, {"run_id": "aaaa"})
    (out / shards.SHARDS / ".part-x.parquet.tmp").write_bytes(b"half")
    shards.check_output(out, "aaaa", False, [])  # the resume case
    shards.open_output(out, False, {"run_id": "aaaa"})
    assert not (out / shards.SHARDS / ".part-x.parquet.tmp").exists()
    with pytest.raises(AnomedError, match="another checkpoint \\(run id aaaa; this .* bbbb"):
        shards.check_output(out, "bbbb", False, [])
    shards.check_output(out, "bbbb", True, [])
    shards.open_output(out, True, {"run_id": "bbbb"})
    assert sorted(p.name for p in out.iterdir()) == [shards.SHARDS, shards.RUN_FILE]
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("x")
    with pytest.raises(AnomedError, match="no earlier `--engine ray` run"):
        shards.check_output(other, "aaaa", False, [])
    with pytest.raises(AnomedError, match="lies inside the input folder"):
        shards.check_output(other / "out", "aaaa", False, [other])


def test_a_resume_keeps_the_earlier_maps_setting(tmp_path):
    """A resume with --maps over rows written without it skipped those rows: their overlays
    were silently missing while the new rows had them."""
    out = tmp_path / "out"
    shards.open_output(out, False, {"run_id": "aaaa", "maps": False})
    shards.check_output(out, "aaaa", False, [], maps=False)
    with pytest.raises(AnomedError, match="earlier run there was without --maps"):
        shards.check_output(out, "aaaa", False, [], maps=True)
    shards.check_output(out, "aaaa", True, [], maps=True)  # --overwrite starts afresh


def test_plan_leaves_cpus_for_decoding_and_refuses_missing_gpus():
    plan = plan_resources(RayPredictConfig(workers=2), {"CPU": 2})
    assert (plan.workers, plan.actor_cpus, plan.task_cpus, plan.device) == (2, 0.5, 1.0, "cpu")
    plan = plan_resources(RayPredictConfig(), {"CPU": 32, "GPU": 4})
    assert (plan.workers, plan.gpus_per_worker, plan.device) == (4, 1.0, "cuda")
    with pytest.raises(AnomedError, match="needs 4 GPUs; the Ray cluster has 2"):
        plan_resources(RayPredictConfig(workers=4, gpus_per_worker=1), {"CPU": 8, "GPU": 2})


def test_cli_ray_flags_need_the_ray_engine(tmp_path, capsys):
    argv = ["predict", str(tmp_path), str(tmp_path), "--workers", "2", "-o", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "--workers: only with --engine ray" in capsys.readouterr().err
    argv = ["predict", str(tmp_path), "x.png", "--engine", "ray", "--workers", "0"]
    assert main(argv) == 2
    assert "workers: 0" in capsys.readouterr().err


def test_run_id_is_the_manifest_hash(tmp_path):
    (tmp_path / "manifest.json").write_text(json.dumps({"sha256": {"a": "b"}}))
    rid = shards.run_id(tmp_path)
    assert len(rid) == 16 and rid == shards.run_id(tmp_path)


def test_a_batch_that_killed_its_actor_three_times_becomes_error_rows(tmp_path):
    from anomed.ray.stages import MAX_ATTEMPTS, Scorer, ScorerSpec

    scorer = Scorer.__new__(Scorer)  # no model: a given-up batch never reaches it
    scorer.spec = ScorerSpec("run", "cpu", 4, str(tmp_path), False)
    batch = _batch(["/d/a.png|1|1", "/d/b.png|1|1"])
    batch["pixels"] = np.array([b"", b""], object)
    for _ in range(MAX_ATTEMPTS):  # each start is counted before scoring (then the actor died)
        assert scorer._count_attempt(batch) is not None
    out = scorer(batch)
    assert list(out["status"]) == ["error", "error"] and "pixels" not in out
    assert f"died {MAX_ATTEMPTS} times" in out["error"][0] and "--retry-errors" in out["error"][0]
    assert not list((tmp_path / shards.ATTEMPTS).iterdir())  # the count is spent


def test_output_folder_holding_an_input_or_manifest_is_refused(tmp_path):
    """--overwrite empties OUT before the listing reads the inputs: OUT may not hold them."""
    (tmp_path / "list.csv").write_text("path\na.png\n")
    (tmp_path / "a.png").write_bytes(b"x")
    for item in (tmp_path / "list.csv", tmp_path / "a.png"):
        with pytest.raises(AnomedError, match="would delete"):
            shards.check_output(tmp_path, "aaaa", True, [item])


def test_shards_get_the_umask_mode(tmp_path):
    import pyarrow as pa

    old = os.umask(0o022)
    try:
        shards._atomic_parquet(pa.table({"a": [1]}), tmp_path / "part-x.parquet")
    finally:
        os.umask(old)
    assert (tmp_path / "part-x.parquet").stat().st_mode & 0o777 == 0o644  # was 0600
    assert [p.name for p in tmp_path.iterdir()] == ["part-x.parquet"]
