"""`anomed serve` on the command line: flags become a checked ServeConfig; errors are one line."""

import socket

import pytest

from anomed.cli import build_parser, main
from anomed.serve import config as serve_config
from anomed.serve.service import model_names


def test_serve_help(capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["serve", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for flag in ("--host", "--port", "--token", "--data-dir", "--max-upload-mb"):
        assert flag in out


def test_model_names_are_unique_and_readable():
    runs = ["runs/demo/checkpoint", "runs/p16", "x=runs/p16", "runs/other/p16"]
    assert [n for n, _ in model_names(runs)] == ["demo", "p16", "x", "p16-2"]


def test_bad_settings_are_one_line_errors(serve_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv(serve_config.TOKEN_ENV, raising=False)
    assert main(["serve", str(serve_checkpoint), "--token", "short"]) == 2
    assert "token" in capsys.readouterr().err
    assert main(["serve", str(serve_checkpoint), "--max-upload-mb", "0"]) == 2
    assert "max_upload_mb" in capsys.readouterr().err
    assert main(["serve", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert main(["serve", str(serve_checkpoint), "--port", str(port)]) == 2
    assert "cannot listen" in capsys.readouterr().err


def test_token_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(serve_config.TOKEN_ENV, "from-the-env-123")
    assert serve_config.token_from_env(None) == "from-the-env-123"
    assert serve_config.token_from_env("flag-wins-1234") == "flag-wins-1234"
    monkeypatch.setenv(serve_config.TOKEN_ENV, "")
    assert serve_config.token_from_env(None) is None


def test_serve_runtime_needs_the_runs_export(serve_checkpoint, tmp_path, capsys):
    argv = ["serve", str(serve_checkpoint), "--port", "0", "--data-dir", str(tmp_path)]
    assert main([*argv, "--runtime", "openvino"]) == 2
    err = capsys.readouterr().err
    assert "holds no openvino.xml or openvino-int8.xml. Fix: anomed export" in err


@pytest.mark.slow
def test_serve_loads_an_exported_graph(serve_checkpoint, tmp_path):
    import shutil

    import numpy as np

    from anomed.export.pipeline import export_run
    from anomed.serve.config import ServeConfig
    from anomed.serve.service import Service

    run = tmp_path / "run"
    shutil.copytree(serve_checkpoint, run)
    export_run(run, fmt="openvino")
    service = Service.open(ServeConfig(runs=[str(run)], runtime="openvino", data_dir=str(tmp_path)))
    try:
        served = service.model(None)
        assert served.detector.runtime == "openvino" and served.detector.path.name == "openvino.xml"
        (pred,) = served.detector.predict([np.full((64, 64), 0.5, np.float32)])
        assert pred.ok and pred.decision in ("normal", "abnormal")
    finally:
        service.close()
