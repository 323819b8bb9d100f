"""The --runtime options of predict and bench speed."""

import json

import pytest

from anomed.cli import main


def test_predict_runtime_onnx_needs_an_export(phantom_root, tmp_path, capsys):
    argv = ["-q", "predict", str(tmp_path), str(phantom_root / "test"), "-o", str(tmp_path / "o")]
    assert main([*argv, "--runtime", "onnx"]) == 2
    assert "holds no model.onnx or model-int8.onnx. Fix: anomed export" in capsys.readouterr().err
    assert main([*argv, "--runtime", "openvino", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "holds no openvino.xml or openvino-int8.xml. Fix: anomed export" in err
    assert "--format openvino" in err
    assert main([*argv, "--runtime", "onnx", "--compile", "--overwrite"]) == 2
    assert "--compile applies to the torch runtime only" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_speed_times_onnx_beside_pytorch(tmp_path, capsys):
    out = tmp_path / "speed"
    argv = ["bench", "speed", "--method", "memorybank", "--image-size", "112", "--k", "2"]
    argv += ["--batch-sizes", "1", "2", "--iters", "1", "--precisions", "fp32", "--no-adapt"]
    assert main([*argv, "--runtime", "onnx", "-o", str(out)]) == 0
    report = json.loads((out / "speed.json").read_text())
    rows = report["onnx_inference"]
    assert [r["batch"] for r in rows] == [1, 2] and all(r["img_per_s"] > 0 for r in rows)
    assert {r["provider"] for r in rows} == {"CPUExecutionProvider"}
    assert [r["batch"] for r in report["inference"]] == [1, 2]  # the PyTorch rows stay
    assert "ONNX Runtime" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_speed_times_every_cpu_runtime_with_the_cpu_beside_it(tmp_path, capsys):
    out = tmp_path / "speed"
    argv = ["bench", "speed", "--method", "memorybank", "--image-size", "112", "--k", "2"]
    argv += ["--batch-sizes", "1", "--iters", "1", "--precisions", "fp32", "--no-adapt"]
    assert main([*argv, "--runtime", "all", "-o", str(out)]) == 0
    report = json.loads((out / "speed.json").read_text())
    names = [r["runtime"] for r in report["runtimes"]]
    assert names == ["onnx", "onnx-int8", "openvino", "openvino-int8", "torch-compile"]
    assert all(r["img_per_s"] > 0 and r["model_mib"] > 0 for r in report["runtimes"])
    int8 = {r["runtime"]: r["model_mib"] for r in report["runtimes"]}
    assert int8["onnx-int8"] < int8["onnx"] and int8["openvino-int8"] < int8["openvino"]
    assert report["weights"] == "random init" and report["cpu"]["model"]
    printed = capsys.readouterr().out
    assert printed.startswith("CPU: ") and "threads; weights: random init" in printed
