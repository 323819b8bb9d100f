"""The domain guard: a detector says when an image is not of the kind it was trained on.

All figures here come from the random-init tiny backbone on synthetic phantoms: they check that
the guard works on cheap token and pixel statistics alone, not how well it does with real CLIP.
"""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pytest
import yaml
from safetensors.torch import load_file, save_file

from anomed.cli import main
from anomed.data.layouts import load_dataset
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
from anomed.data.phantoms.chest import ChestPhantomConfig, write_chest_phantoms
from anomed.data.phantoms.organs import BmadPhantomConfig, write_bmad_phantoms
from anomed.data.volumes import stack_slices
from anomed.engine.checkpoint import (
    CONFIG,
    MANIFEST,
    WEIGHTS,
    load_domain_guard,
    read_checkpoint_info,
    sha256_file,
)
from anomed.engine.detector import load_detector
from anomed.engine.domain import NO_GUARD_NOTE, OUT_OF_DOMAIN, STATE_PREFIX, volume_distance
from anomed.engine.predict import predict_run


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    """Brain phantoms to train on; chest films and BMAD liver phantoms to show it."""
    root = tmp_path_factory.mktemp("domain")
    brain = root / "brain"
    cfg = PhantomConfig(n_train=12, n_test_normal=10, n_test_abnormal=10, image_size=96, seed=5)
    write_phantom_dataset(brain, cfg)
    chest = root / "chest"
    chest_cfg = ChestPhantomConfig(n_train=2, n_test_normal=10, n_test_abnormal=10, size=96, seed=6)
    write_chest_phantoms(chest, chest_cfg)
    liver_cfg = BmadPhantomConfig(organs=("liver",), n_valid=(2, 2), n_test=(10, 10), size=96)
    (liver,) = write_bmad_phantoms(root / "bmad", liver_cfg)
    return {"brain": brain, "chest": chest, "liver": liver}


@pytest.fixture(scope="module")
def brain_run(sets, tmp_path_factory):
    """A memory-bank detector on 4 brain shots and 4 validation normals (112 px)."""
    out = tmp_path_factory.mktemp("run") / "brain"
    args = ["-q", "train", "--data", str(sets["brain"]), "--method", "memorybank", "--k", "4"]
    args += ["--image-size", "112", "--output", str(out), "--set", "data.n_val=4"]
    assert main(args) == 0
    return out


def _test_files(root, label=None):
    return [str(s.image) for s in load_dataset(root).test if label is None or s.label == label]


def _flagged(detector, files) -> float:
    rows = detector.predict(files, keep_maps=False)
    assert all(r.ok and r.in_domain is not None for r in rows)
    return sum(r.in_domain is False for r in rows) / len(rows)


def test_training_records_the_domain_in_the_checked_checkpoint(brain_run):
    info = read_checkpoint_info(brain_run)
    assert info.domain is not None and info.domain.n_items == 8 and info.domain.n_rows == 32
    assert info.domain.threshold > info.domain.loo_median > 0
    tensors = load_file(str(brain_run / WEIGHTS))
    assert {STATE_PREFIX + k for k in ("center", "scale", "bank", "block_scale")} <= set(tensors)
    guard = load_domain_guard(brain_run, info)
    assert guard.bank.shape == (32, sum(info.domain.blocks))


def test_brain_detector_flags_chest_and_liver_phantoms_but_not_its_own_images(sets, brain_run):
    """Issue 23: >= 95 % of chest films, >= 90 % of liver phantoms, <= 5 % of its own test
    images (normal and abnormal). Random-init backbone: token and pixel statistics carry it."""
    detector = load_detector(brain_run, "cpu")
    own_normal = _flagged(detector, _test_files(sets["brain"], 0))
    own_abnormal = _flagged(detector, _test_files(sets["brain"], 1))
    chest = _flagged(detector, _test_files(sets["chest"]))
    liver = _flagged(detector, _test_files(sets["liver"]))
    print(f"flagged: own normal {own_normal}, own abnormal {own_abnormal}, chest {chest}, "
          f"liver {liver}")  # fmt: skip
    assert own_normal <= 0.05 and own_abnormal <= 0.05
    assert chest >= 0.95 and liver >= 0.90


def _mixed_inputs(sets, tmp_path):
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, f in enumerate(_test_files(sets["brain"], 0)[:2] + _test_files(sets["chest"], 0)[:2]):
        shutil.copy(f, folder / f"{i}_{'brain' if i < 2 else 'chest'}.png")
    return folder


def test_warn_flags_but_decides_refuse_gives_error_rows_off_computes_nothing(
    sets, brain_run, tmp_path
):
    inputs = _mixed_inputs(sets, tmp_path)
    warn = predict_run(brain_run, [inputs], tmp_path / "warn", "cpu", progress=False)
    rows = {r["file"].rsplit("/", 1)[-1]: r for r in warn.rows}
    chest = [r for name, r in rows.items() if "chest" in name]
    brain = [r for name, r in rows.items() if "brain" in name]
    assert all(r["status"] == "ok" and r["in_domain"] is False for r in chest)
    assert all(r["decision"] in ("normal", "abnormal") for r in chest)  # still decided
    assert all(r["in_domain"] is True and r["domain_distance"] >= 0 for r in brain)
    assert any("2 of 4 inputs are outside this detector's training domain" in line
               for line in warn.summary_lines())  # fmt: skip
    summary = json.loads((tmp_path / "warn" / "predictions.json").read_text())
    assert summary["out_of_domain"] == 2 and summary["in_domain"] == 2
    assert summary["domain_check"] == "warn" and summary["domain_threshold"] > 0
    csv_head = (tmp_path / "warn" / "predictions.csv").read_text().splitlines()[0]
    assert "domain_distance,in_domain" in csv_head

    refuse = predict_run(
        brain_run, [inputs], tmp_path / "refuse", "cpu", progress=False, domain_check="refuse"
    )
    errors = [r for r in refuse.rows if r["status"] == "error"]
    assert len(errors) == 2 and all("chest" in r["file"] for r in errors)
    assert all(OUT_OF_DOMAIN in r["error"] and "Fix:" in r["error"] for r in errors)
    assert all(r["decision"] is None and r["in_domain"] is False for r in errors)
    assert any("2 refused" in line for line in refuse.summary_lines())

    off = predict_run(
        brain_run, [inputs], tmp_path / "off", "cpu", progress=False, domain_check="off"
    )
    assert all(r["status"] == "ok" and r["in_domain"] is None for r in off.rows)
    assert all(r["domain_distance"] is None for r in off.rows)


def test_the_overlay_of_an_outside_image_says_so(sets, brain_run, tmp_path):
    inputs = _mixed_inputs(sets, tmp_path)
    report = predict_run(brain_run, [inputs], tmp_path / "out", "cpu", progress=False)
    heights = {}
    for r in report.rows:
        image = cv2.imread(str(tmp_path / "out" / r["overlay"]))
        heights[r["in_domain"]] = image.shape[0]
    assert heights[False] > heights[True]  # the warning's extra header line


def _strip_guard(run, target):
    """`run` as a checkpoint saved before the guard: no `domain` in config.yaml, no guard
    tensors, a manifest written for those files."""
    shutil.copytree(run, target)
    config = yaml.safe_load((target / CONFIG).read_text())
    del config["domain"]
    (target / CONFIG).write_text(yaml.safe_dump(config, sort_keys=False))
    tensors = load_file(str(target / WEIGHTS))
    save_file({k: v for k, v in tensors.items() if not k.startswith(STATE_PREFIX)},
              str(target / WEIGHTS))  # fmt: skip
    sha = {name: sha256_file(target / name) for name in (WEIGHTS, CONFIG)}
    manifest = json.loads((target / MANIFEST).read_text())
    (target / MANIFEST).write_text(json.dumps({**manifest, "sha256": sha}))
    return target


def test_a_checkpoint_saved_before_the_guard_predicts_with_null_and_a_note(
    sets, brain_run, tmp_path
):
    old = _strip_guard(brain_run, tmp_path / "old")
    assert read_checkpoint_info(old).domain is None
    report = predict_run(old, [_mixed_inputs(sets, tmp_path)], tmp_path / "out", "cpu",
                         progress=False)  # fmt: skip
    assert all(r["status"] == "ok" and r["in_domain"] is None for r in report.rows)
    assert all(r["domain_note"] == NO_GUARD_NOTE for r in report.rows)
    assert all(r["decision"] in ("normal", "abnormal") for r in report.rows)
    assert any("saved before the guard existed" in line for line in report.summary_lines())


def test_a_volume_is_judged_by_its_slices(sets, brain_run, tmp_path):
    import nibabel as nib

    detector = load_detector(brain_run, "cpu")
    for name, expected in (("brain", True), ("chest", False)):
        files = _test_files(sets[name], 0)[:4]
        slices = np.stack([cv2.imread(f, cv2.IMREAD_GRAYSCALE) / 255.0 for f in files])
        h, w = slices.shape[1:]
        data = stack_slices(slices, "axial", (w, h, len(files)))  # axial slices = the images
        path = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data.astype(np.float32), np.eye(4)), str(path))
        report = predict_run(brain_run, [path], tmp_path / name, "cpu", progress=False)
        (row,) = report.rows
        assert row["status"] == "ok" and row["in_domain"] is expected, row
        assert detector.judge(row["domain_distance"])[0] is expected
    assert volume_distance([1.0, 5.0, 2.0]) == 2.0 and volume_distance(None) is None


def test_eval_counts_the_test_images_the_guard_would_flag(sets, brain_run, tmp_path):
    assert main(["-q", "eval", str(brain_run), "--output", str(tmp_path / "own")]) == 0
    own = json.loads((tmp_path / "own" / "metrics.json").read_text())["domain_guard"]
    assert own["threshold"] > 0 and own["n_out_of_domain"] <= 1  # 20 own test images
    assert main(["-q", "eval", str(brain_run), "--data", str(sets["chest"]), "--output",
                 str(tmp_path / "chest")]) == 0  # fmt: skip
    chest = json.loads((tmp_path / "chest" / "metrics.json").read_text())["domain_guard"]
    assert chest["n_out_of_domain"] >= 19 and chest["share_out_of_domain"] >= 0.95
    text = (tmp_path / "chest" / "metrics.md").read_text()
    assert "test images would be flagged as outside this detector's training domain" in text


def test_onnx_runtime_gives_torchs_domain_fields(sets, brain_run, tmp_path):
    pytest.importorskip("onnxruntime")
    from anomed.export.pipeline import export_run
    from anomed.export.runtime import load_onnx_detector

    target = tmp_path / "model.onnx"
    report = export_run(brain_run, target)
    assert report.check.passed and report.check.max_domain_diff is not None
    side = json.loads(target.with_suffix(".json").read_text())
    assert side["domain_threshold"] == read_checkpoint_info(brain_run).domain.threshold
    files = _test_files(sets["brain"], 1)[:3] + _test_files(sets["chest"], 1)[:3]
    torch_rows = load_detector(brain_run, "cpu").predict(files, keep_maps=False)
    onnx_rows = load_onnx_detector(target, "cpu").predict(files, keep_maps=False)
    assert [r.in_domain for r in onnx_rows] == [r.in_domain for r in torch_rows]
    assert [r.in_domain for r in onnx_rows] == [True] * 3 + [False] * 3
    for a, b in zip(onnx_rows, torch_rows, strict=True):
        assert a.domain_distance == pytest.approx(b.domain_distance, rel=1e-3, abs=1e-4)


def test_ray_stages_write_the_guards_columns_to_parquet(sets, brain_run, tmp_path):
    """The Ray engine's stages (decode, score, write) without a Ray cluster: each Parquet row
    carries domain_distance and in_domain (the cluster run is in test_ray_cluster.py)."""
    pytest.importorskip("ray")
    pq = pytest.importorskip("pyarrow.parquet")
    from anomed.ray import shards
    from anomed.ray.inputs import expand_batch
    from anomed.ray.stages import Scorer, ScorerSpec, decode_batch

    inputs = _mixed_inputs(sets, tmp_path)
    listed = expand_batch({"input": np.array([str(inputs)], object)})
    decoded = decode_batch(listed, 112)
    table = []
    for mode in ("warn", "refuse"):
        out = tmp_path / mode  # one shard per folder: its name comes from the rows' keys
        (out / shards.SHARDS).mkdir(parents=True)
        scored = Scorer(ScorerSpec(str(brain_run), "cpu", 4, str(out), False, mode))(decoded)
        shards.write_shard(scored, str(out), mode, 1.0, (0.0, 1.0))
        table += pq.read_table(out / shards.SHARDS).to_pylist()
    warn = [r for r in table if r["run_id"] == "warn"]
    assert len(warn) == 4 and all(r["status"] == "ok" for r in warn)
    for r in warn:
        assert r["in_domain"] is ("brain" in r["path"]) and r["domain_distance"] >= 0
    refused = [r for r in table if r["run_id"] == "refuse" and r["status"] == "error"]
    assert len(refused) == 2 and all("chest" in r["path"] and OUT_OF_DOMAIN in r["error"]
                                     and r["in_domain"] is False for r in refused)  # fmt: skip
