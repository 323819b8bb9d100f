"""`--tracking URI`: train, eval and bench runs logged to a temporary MLflow sqlite store and
read back with `mlflow.MlflowClient`; an unwritable store fails at once, before any work."""

from __future__ import annotations

import csv
import json

import pytest

mlflow = pytest.importorskip("mlflow")

from anomed.cli import main  # noqa: E402
from anomed.engine.bench import BenchConfig, run_bench  # noqa: E402
from anomed.errors import AnomedError  # noqa: E402
from anomed.tracking import (  # noqa: E402
    EXPERIMENT,
    NO_TRACKING,
    MlflowTracking,
    flatten,
    open_tracking,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One sqlite store for the module (creating its tables takes seconds); each test logs
    into its own experiment."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    open_tracking(uri)
    return uri


def _client(uri, experiment=EXPERIMENT):
    client = mlflow.MlflowClient(tracking_uri=uri)
    return client, client.get_experiment_by_name(experiment).experiment_id


def _artifacts(client, run_id, path=""):
    return sorted(a.path for a in client.list_artifacts(run_id, path))


def test_train_and_eval_runs_read_back(checkpoint, store, tmp_path):
    uri = store
    out = tmp_path / "eval"
    assert main(["-q", "eval", str(checkpoint), "-o", str(out), "--tracking", uri]) == 0
    tracking = open_tracking(uri)
    train_id = tracking.train(checkpoint)
    client, experiment = _client(uri)
    runs = {r.info.run_id: r for r in client.search_runs([experiment])}
    assert len(runs) == 2
    (eval_run,) = [r for r in runs.values() if r.info.run_id != train_id]
    metrics = json.loads((out / "metrics.json").read_text())
    assert eval_run.data.metrics["test_image_auroc"] == pytest.approx(metrics["image_auroc"])
    tags = eval_run.data.tags
    assert tags["method"] == "mediclip" and tags["random_init"] == "true"
    assert tags["backbone"] == "anomed-tiny" and tags["anomed.version"]
    assert tags["k"] == eval_run.data.params["data.k"]
    assert _artifacts(client, eval_run.info.run_id, "eval") == [
        f"eval/{n}" for n in ("heatmaps.png", "metrics.json", "metrics.md", "roc.png")
    ]
    train = runs[train_id]
    assert train.data.params["method"] == "mediclip"
    assert train.data.params["train.epochs"] == "2"  # the resolved config, flattened
    history = client.get_metric_history(train_id, "loss")
    assert [m.step for m in history] == [1, 2]  # one point per epoch
    assert "config.yaml" in _artifacts(client, train_id)
    assert train.info.status == "FINISHED"


def test_bench_grid_is_a_parent_run_with_a_child_per_cell(phantom_root, store, tmp_path):
    uri = store
    cfg = BenchConfig(
        methods=["memorybank"],
        datasets={"good": str(phantom_root), "empty": str(tmp_path / "empty")},
        ks=[2],
        seeds=[0],
        image_size=64,
        output=str(tmp_path / "bench"),
    )
    (tmp_path / "empty").mkdir()
    tracking = MlflowTracking(uri, experiment="grid")
    run_bench(cfg, progress=False, log=lambda _: None, tracking=tracking, report=True)
    client, experiment = _client(uri, "grid")
    runs = client.search_runs([experiment])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.data.tags["dataset"]: r for r in runs if r not in [parent]}
    assert set(children) == {"good", "empty"}
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children.values())
    good, empty = children["good"], children["empty"]
    rows = {r["dataset"]: r for r in csv.DictReader(open(tmp_path / "bench" / "results.csv"))}
    expected = float(rows["good"]["image_auroc"])
    assert good.data.metrics["test_image_auroc"] == pytest.approx(expected)
    assert good.info.status == "FINISHED" and empty.info.status == "FAILED"
    assert "unknown dataset layout" in empty.data.tags["anomed.error"]
    assert {"results.csv", "tables.md", "report.html"} <= set(
        _artifacts(client, parent.info.run_id)
    )
    assert parent.data.tags["anomed.failed_cells"] == "1"


def test_an_unwritable_store_fails_before_any_training(phantom_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = tmp_path / "run"
    for uri in (f"sqlite:///{blocker}/mlflow.db", f"file:{blocker}/mlruns"):
        with pytest.raises(AnomedError, match="cannot be written"):
            open_tracking(uri)
        code = main(["-q", "train", "--data", str(phantom_root), "-o", str(out), "--tracking", uri])
        assert code == 2 and not out.exists()  # nothing trained, nothing written
    bench = ["-q", "bench", "run", "--methods", "memorybank", "--datasets", f"p={phantom_root}"]
    bench += ["--ks", "2", "--seeds", "0", "-o", str(tmp_path / "b")]
    assert main([*bench, "--tracking", f"file:{blocker}/mlruns"]) == 2
    assert not (tmp_path / "b").exists()


def test_tracking_off_does_nothing_and_params_flatten():
    assert open_tracking(None) is NO_TRACKING and open_tracking("") is NO_TRACKING
    assert NO_TRACKING.train(None) is None  # type: ignore[arg-type]
    assert flatten({"train": {"lr": 0.001, "epochs": None}, "method_args": {}, "k": [1, 2]}) == {
        "train.lr": "0.001",
        "train.epochs": "null",
        "method_args": "{}",
        "k": "[1, 2]",
    }


def test_a_file_store_works_without_a_server(tmp_path):
    uri = f"file:{tmp_path / 'mlruns'}"
    tracking = open_tracking(uri)
    assert tracking.enabled and (tmp_path / "mlruns").is_dir()
    assert mlflow.MlflowClient(tracking_uri=uri).get_experiment_by_name(EXPERIMENT) is not None
