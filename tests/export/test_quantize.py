"""`anomed export --quantize int8` and `--format openvino`: gates, refusals, and the exported
graphs as detectors (`predict --runtime onnx|openvino`, same rows and decisions as PyTorch)."""

import json
import shutil

import numpy as np
import pytest

from anomed.cli import main
from anomed.errors import AnomedError
from anomed.export.pipeline import export_run
from anomed.export.runtime import load_graph_detector

ALL = ["mediclip", "mvfa", "madclip", "condprompt", "memorybank", "mlalp", "winclip", "winclip+"]
ALL.append("ppad")
VARIANTS = [("onnx", "int8"), ("openvino", None), ("openvino", "int8")]


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


def _export_or_refuse(run, target, fmt, quantize):
    """Export; a refusal must be one line naming the failed gate, with nothing written."""
    try:
        report = export_run(run, target, fmt=fmt, quantize=quantize)
    except AnomedError as exc:
        message = str(exc)
        assert "\n" not in message and "Nothing was written" in message
        assert "FAILED --gate-" in message and "(measured" in message
        assert not target.parent.exists() or _files(target.parent) == []
        return None
    side = json.loads(target.with_suffix(".json").read_text())
    assert side["precision"] == (quantize or "fp32") and side["self_check"]["passed"]
    assert side["format"] == f"anomed-{fmt}/1"
    return report


@pytest.fixture(scope="module")
def int8_run(run_factory, tmp_path_factory):
    """A copy of the MediCLIP run with its INT8 ONNX and INT8 OpenVINO exports."""
    run = tmp_path_factory.mktemp("int8") / "mediclip"
    shutil.copytree(run_factory("mediclip"), run, ignore=shutil.ignore_patterns("model.*"))
    shutil.copy(run_factory("mediclip") / "model.safetensors", run)
    reports = {
        fmt: export_run(run, fmt=fmt, quantize="int8", gates=_LENIENT)
        for fmt in ("onnx", "openvino")
    }
    return run, reports


def _gates(**kwargs):
    from anomed.export.gates import Gates

    return Gates(**kwargs)


# the tiny random-init backbone scores its 6 phantom test images within ~0.01 of each other, so
# one swapped pair already costs 0.06 rank correlation: these tests check the mechanics, the
# default gates are exercised by the parametrised test below (pass or refuse)
_LENIENT = _gates(rank_corr=-1.0, map_cosine=-1.0, auroc_drop=100.0)


@pytest.mark.slow
def test_int8_exports_are_written_with_their_measured_gates(int8_run):
    run, reports = int8_run
    want = {"model-int8.json", "model-int8.onnx", "openvino-int8.xml", "openvino-int8.bin"}
    assert want <= set(_files(run)) and "model.onnx" not in _files(run)
    for fmt, name in (("onnx", "model-int8.json"), ("openvino", "openvino-int8.json")):
        side = json.loads((run / name).read_text())
        check = side["self_check"]
        assert side["precision"] == "int8" and side["quantization"]["tool"].startswith("onnxrun")
        assert side["calibration"].endswith("with synthetic anomalies")  # MediCLIP makes them
        assert check["n_images"] == 6 and -1 <= check["rank_corr"] <= 1
        assert 0 <= check["image_auroc"] <= 1 and 0 <= check["pixel_auroc"] <= 1
        assert check["gates"] == {"rank_corr": -1.0, "map_cosine": -1.0, "auroc_drop": 100.0}
        assert reports[fmt].check.passed
        assert "self-check on 6 test images" in reports[fmt].lines()[1]
    import onnx

    model = onnx.load(str(run / "model-int8.onnx"))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "LayerNormalization", "Softmax"} <= ops
    meta = {p.key for p in model.metadata_props}
    assert "anomed.threshold" in meta


@pytest.mark.slow
def test_an_impossible_gate_refuses_naming_it_and_writes_nothing(run_factory, tmp_path, capsys):
    target = tmp_path / "out" / "model-int8.onnx"
    argv = ["-q", "export", str(run_factory("mediclip")), "--quantize", "int8", "-o", str(target)]
    assert main([*argv, "--gate-map-cosine", "1"]) == 2
    err = capsys.readouterr().err
    assert "FAILED --gate-map-cosine 1 (measured 0.9" in err and "Nothing was written" in err
    assert err.count("\n") == 1 and _files(tmp_path / "out") == []
    assert main([*argv, "--gate-rank-corr", "7"]) == 2
    assert "--gate-rank-corr 7.0: must be between -1 and 1" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnx", "openvino"])
def test_predict_on_int8_gives_fp32_decisions_except_where_the_check_said(
    int8_run, phantom_root, tmp_path, runtime
):
    run, reports = int8_run
    graph = run / ("model-int8.onnx" if runtime == "onnx" else "openvino-int8.xml")
    inputs = [str(phantom_root / "test"), str(tmp_path / "missing.png")]
    (tmp_path / "bad.png").write_bytes(b"not an image")
    inputs.append(str(tmp_path / "bad.png"))
    rows = {}
    for name, source, rt in (("fp32", run, "torch"), ("int8", graph, runtime)):
        out = tmp_path / name
        main(["-q", "predict", str(source), *inputs, "-o", str(out), "--runtime", rt])
        table = json.loads((out / "predictions.json").read_text())
        rows[name] = {r["file"]: r for r in table["predictions"]}
        assert table["runtime"] == rt
    assert rows["fp32"].keys() == rows["int8"].keys() and len(rows["fp32"]) == 8
    changed = set(reports[runtime].check.decisions_changed)
    for file, want in rows["fp32"].items():
        got = rows["int8"][file]
        assert (got["status"], got.get("error")) == (want["status"], want.get("error"))
        if any(file.endswith(c.rsplit("/", 1)[-1]) for c in changed):
            assert got["decision"] != want["decision"]
        else:
            assert got["decision"] == want["decision"]
    assert sum(r["status"] == "error" for r in rows["int8"].values()) == 2


@pytest.mark.slow
def test_openvino_runs_on_the_cpu_only(int8_run):
    run, _ = int8_run
    with pytest.raises(AnomedError, match="--runtime openvino runs on the CPU. Fix: --device cpu"):
        load_graph_detector(run, "openvino", device="cuda")
    detector = load_graph_detector(run, "openvino", device="cpu")
    assert detector.path.name == "openvino-int8.xml" and detector.precision == "int8"
    scores, maps = detector.score_batch(np.zeros((3, 112, 112, 3), np.float32))
    assert scores.shape == (3,) and maps.shape == (3, 112, 112)
    assert detector.extra_outputs == {}  # only the two outputs: nothing else to pass on


@pytest.mark.slow
@pytest.mark.parametrize("fmt,quantize", VARIANTS)
@pytest.mark.parametrize("name", ALL)
def test_every_method_exports_int8_and_openvino_or_refuses_with_the_gate(
    run_factory, tmp_path, name, fmt, quantize
):
    target = tmp_path / "out" / ("model.onnx" if fmt == "onnx" else "model.xml")
    report = _export_or_refuse(run_factory(name), target, fmt, quantize)
    if report is not None and quantize is None:  # fp32 OpenVINO: PyTorch to 1e-3
        assert report.check.max_map_diff <= 1e-3 and report.check.max_score_diff <= 1e-3


@pytest.mark.slow
def test_vit_b16_random_weights_exports_int8_and_openvino(
    run_maker, phantom_root, tmp_path, capsys
):
    """The real architecture (random weights: accuracy numbers mean nothing beyond the check)."""
    from anomed.backbone import BackboneConfig, load_backbone

    backbone = load_backbone(BackboneConfig(model="ViT-B-16", image_size=224))
    run = run_maker(tmp_path / "vitb16", "mediclip", backbone, phantom_root, model="ViT-B-16")
    for fmt, quantize in (("onnx", "int8"), ("openvino", "int8")):
        target = tmp_path / fmt / ("m.onnx" if fmt == "onnx" else "m.xml")
        report = _export_or_refuse(run, target, fmt, quantize)
        if report is not None:
            print(report.lines()[1])
            assert report.size_mib < 200  # ~150 MiB of int8 weights vs ~600 MiB fp32
    print(capsys.readouterr().out)
