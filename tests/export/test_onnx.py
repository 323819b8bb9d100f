"""`anomed export --format onnx`, its self-check, and the exported model as a detector."""

import json

import numpy as np
import onnx
import pytest
import torch

from anomed.cli import main
from anomed.engine.checkpoint import sha256_file
from anomed.engine.detector import load_detector
from anomed.errors import AnomedError
from anomed.export import graph as graph_module
from anomed.export.pipeline import export_run
from anomed.export.runtime import load_onnx_detector
from anomed.methods.base import AnomalyOutput


def _export(run, capsys, *extra):
    assert main(["-q", "export", str(run), "--format", "onnx", *extra]) == 0
    return capsys.readouterr().out


def test_export_writes_a_checked_graph_and_its_settings(run_factory, capsys):
    run = run_factory("mediclip")
    printed = _export(run, capsys)
    assert "self-check on 6 test + 2 random images" in printed and "-> ok" in printed
    side = json.loads((run / "model.json").read_text())
    check = side["self_check"]
    assert check["passed"] and check["max_map_diff"] <= 1e-3 and check["max_score_diff"] <= 1e-3
    assert check["n_images"] == 8 and check["decisions_equal"] == 8
    mean, std = side["input"]["mean"], side["input"]["std"]
    assert np.allclose(mean, [0.48145466, 0.4578275, 0.40821073])  # open_clip's CLIP mean
    assert side["method"] == "mediclip" and side["preset"] == "anomed" and side["image_size"] == 112
    assert side["threshold"] is not None and side["opset"] >= 17

    model = onnx.load(str(run / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    meta = {p.key: json.loads(p.value) for p in model.metadata_props}
    assert meta["anomed.mean"] == mean and meta["anomed.std"] == std
    assert meta["anomed.threshold"] == side["threshold"] and meta["anomed.method"] == "mediclip"
    (image,) = model.graph.input
    dims = image.type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, 112, 112]
    assert sorted(o.name for o in model.graph.output) == ["anomaly_map", "score"]
    assert not list(run.glob(".*partial*"))


@pytest.mark.slow
@pytest.mark.parametrize(
    "name", ["mvfa", "madclip", "condprompt", "memorybank", "mlalp", "winclip", "winclip+", "ppad"]
)
def test_every_method_exports_and_passes_the_self_check(run_factory, name, tmp_path):
    report = export_run(run_factory(name), tmp_path / "model.onnx")
    assert report.check.passed, report.check.line()
    assert report.check.max_map_diff <= 1e-3 and report.check.max_score_diff <= 1e-3


@pytest.mark.slow
def test_onnx_detector_scores_like_pytorch_at_any_batch(run_factory, tmp_path):
    run = run_factory("memorybank")  # the bank search: chunked matmul + min in the graph
    export_run(run, tmp_path / "mb.onnx")
    onnx_det = load_onnx_detector(tmp_path / "mb.onnx", device="cpu")
    torch_det = load_detector(run, device="cpu")
    assert onnx_det.image_size == 112 and onnx_det.threshold == torch_det.threshold
    assert onnx_det.map_range == torch_det.map_range and onnx_det.info.run.method == "memorybank"
    images = np.random.default_rng(1).random((3, 112, 112, 3), dtype=np.float32)
    for batch in (images[:1], images):  # traced with 2, run with 1 and 3
        scores, maps = onnx_det.score_batch(batch)
        want_scores, want_maps = torch_det.score_batch(batch)
        assert maps.shape == want_maps.shape and scores.shape == want_scores.shape
        assert np.abs(maps - want_maps).max() <= 1e-3
        assert np.abs(scores - want_scores).max() <= 1e-3


def _decisions(out):
    rows = json.loads((out / "predictions.json").read_text())["predictions"]
    return {r["file"]: (r["status"], r["decision"]) for r in rows}, rows


@pytest.mark.slow
def test_predict_runtime_onnx_gives_pytorchs_decisions(run_factory, phantom_root, tmp_path, capsys):
    run = run_factory("mvfa")  # adapters inside the tower, banks, validation statistics
    _export(run, capsys, "--overwrite")
    for runtime in ("torch", "onnx"):
        argv = [
            "-q",
            "predict",
            str(run),
            str(phantom_root / "test"),
            "-o",
            str(tmp_path / runtime),
        ]
        assert main([*argv, "--runtime", runtime]) == 0
    want, _ = _decisions(tmp_path / "torch")
    got, rows = _decisions(tmp_path / "onnx")
    assert got == want and len(got) == 6
    summary = json.loads((tmp_path / "onnx" / "predictions.json").read_text())
    assert summary["runtime"] == "onnx" and summary["run"].endswith("model.onnx")
    assert {d for _, d in got.values()} == {"normal", "abnormal"}
    scores = {r["file"]: r["score"] for r in rows}
    for r in _decisions(tmp_path / "torch")[1]:
        assert abs(scores[r["file"]] - r["score"]) <= 1e-3


@pytest.mark.slow
def test_a_failing_self_check_leaves_nothing(run_factory, tmp_path, monkeypatch):
    monkeypatch.setattr("anomed.export.onnx.TOLERANCE", -1.0)  # no difference passes
    target = tmp_path / "out" / "model.onnx"
    with pytest.raises(AnomedError, match="does not reproduce PyTorch.*Nothing was written"):
        export_run(run_factory("mediclip"), target)
    assert list((tmp_path / "out").iterdir()) == []


class _Unexportable(torch.nn.Module):
    def forward(self, images):
        x = torch.special.bessel_j0(images[:, 0])  # no ONNX operator for it
        return AnomalyOutput(x, x.flatten(1).amax(1))


@pytest.mark.slow
def test_an_exporter_failure_is_one_line_and_leaves_nothing(run_factory, tmp_path, monkeypatch):
    def recipe(graph, method):
        method.forward = _Unexportable().forward

    monkeypatch.setitem(graph_module.RECIPES, "mediclip", recipe)
    with pytest.raises(AnomedError) as err:
        export_run(run_factory("mediclip"), tmp_path / "model.onnx")
    assert "mediclip: cannot be exported to ONNX" in str(err.value) and "\n" not in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_stale_edited_and_missing_exports_are_refused(run_factory, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(
        run_factory("mediclip"), run, ignore=shutil.ignore_patterns("model.onnx", "model.json")
    )
    _export(run, capsys)
    with pytest.raises(AnomedError, match="exists .an earlier export.*--overwrite"):
        export_run(run)
    with pytest.raises(AnomedError, match="must end in .onnx"):
        export_run(run, tmp_path / "model.bin")
    load_onnx_detector(run, device="cpu")  # fresh: loads
    from anomed.engine.checkpoint import load_checkpoint, save_checkpoint

    method, info = load_checkpoint(run)
    with torch.no_grad():
        method.prompts.ctx.add_(0.1)
    save_checkpoint(run, method, info)  # the run is trained again after the export
    with pytest.raises(AnomedError, match="exported from earlier weights"):
        load_onnx_detector(run)
    (run / "model.onnx").write_bytes(b"not a graph")
    with pytest.raises(AnomedError, match="does not match model.json"):
        load_onnx_detector(run / "model.onnx")
    with pytest.raises(AnomedError, match="holds no model.onnx"):
        load_onnx_detector(tmp_path)


@pytest.mark.slow
def test_large_weights_go_to_a_data_file_that_travels_with_the_graph(
    run_factory, tmp_path, monkeypatch
):
    monkeypatch.setattr("anomed.export.onnx._EXTERNAL_ABOVE", 0)  # as a > 2 GiB model would
    target = tmp_path / "big" / "model.onnx"
    report = export_run(run_factory("mediclip"), target)
    assert report.check.passed
    assert sorted(p.name for p in target.parent.iterdir()) == [
        "model.json",
        "model.onnx",
        "model.onnx.data",
    ]
    sidecar = json.loads((target.parent / "model.json").read_text())
    assert sidecar["external_data"] == "model.onnx.data"
    assert sidecar["external_data_sha256"] == sha256_file(target.parent / "model.onnx.data")
    assert target.stat().st_size < 1_000_000 < (target.parent / "model.onnx.data").stat().st_size
    moved = tmp_path / "moved"
    target.parent.rename(moved)  # the pair works wherever it goes
    detector = load_onnx_detector(moved / "model.onnx", device="cpu")
    scores, maps = detector.score_batch(np.zeros((1, 112, 112, 3), np.float32))
    assert maps.shape == (1, 112, 112) and np.isfinite(scores).all()


def test_a_graph_with_another_exports_weights_file_is_refused(tmp_path):
    """The sidecar hashed only the .onnx graph: with its weights in `model.onnx.data`
    (models > 1.8 GB), another export's weights file beside the graph went unnoticed."""
    from anomed.export.runtime import read_sidecar

    graph, data = tmp_path / "model.onnx", tmp_path / "model.onnx.data"
    graph.write_bytes(b"graph")
    data.write_bytes(b"weights of this export")
    sidecar = {
        "onnx_sha256": sha256_file(graph),
        "external_data": data.name,
        "external_data_sha256": sha256_file(data),
    }
    (tmp_path / "model.json").write_text(json.dumps(sidecar))
    assert read_sidecar(graph)["external_data"] == data.name
    data.write_bytes(b"weights of another export")
    with pytest.raises(AnomedError, match="model.onnx.data: missing, or not the weights"):
        read_sidecar(graph)
    data.unlink()
    with pytest.raises(AnomedError, match="model.onnx.data: missing"):
        read_sidecar(graph)
