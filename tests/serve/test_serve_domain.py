"""The domain guard in the service: API fields, the filter, the CSV, refuse mode, the page."""

from __future__ import annotations

import csv
import io

import pytest
from fastapi.testclient import TestClient

from anomed.config import BackboneConfig, RunConfig
from anomed.data.datasets import load_support
from anomed.data.layouts import load_dataset
from anomed.data.phantoms.brain import PhantomConfig, write_phantom_dataset
from anomed.data.phantoms.chest import ChestPhantomConfig, write_chest_phantoms
from anomed.engine.checkpoint import Calibration, CheckpointInfo, save_checkpoint
from anomed.engine.domain import OUT_OF_DOMAIN, fit_domain_guard
from anomed.methods import create_method
from anomed.serve import ServeConfig, build_app


@pytest.fixture(scope="module")
def guarded(tiny_backbone, tmp_path_factory):
    """(checkpoint with a guard fitted on 8 brain phantoms, brain test PNG, chest PNG)."""
    root = tmp_path_factory.mktemp("serve-domain")
    cfg = PhantomConfig(n_train=8, n_test_normal=1, n_test_abnormal=1, image_size=96, seed=2)
    brain = load_dataset(write_phantom_dataset(root / "brain", cfg).root)
    chest_cfg = ChestPhantomConfig(n_train=1, n_test_normal=1, n_test_abnormal=1, size=96)
    chest = load_dataset(write_chest_phantoms(root / "chest", chest_cfg).root)
    shots = load_support(brain.train, tiny_backbone.image_size)
    guard = fit_domain_guard(tiny_backbone, shots.images)
    method = create_method("mediclip", tiny_backbone)
    method.set_class_name("brain")
    run = RunConfig(backbone=BackboneConfig(model="anomed-tiny", image_size=112))
    info = CheckpointInfo(run=run, calibration=Calibration(0.8, 0.05, 0.0, 1.0), class_name="brain")
    checkpoint = save_checkpoint(root / "checkpoint", method, info, guard)
    return checkpoint, brain.test[0].image.read_bytes(), chest.test[0].image.read_bytes()


def _client(checkpoint, data_dir, **settings) -> TestClient:
    cfg = ServeConfig(
        runs=[f"brain={checkpoint}"], data_dir=str(data_dir), device="cpu", **settings
    )
    return TestClient(build_app(cfg))


def _post(client, name, data):
    return client.post("/api/predict", files={"file": (name, data)})


def test_studies_carry_the_guards_fields_and_can_be_filtered(guarded, tmp_path):
    checkpoint, brain, chest = guarded
    with _client(checkpoint, tmp_path) as client:
        inside, outside = (
            _post(client, "brain.png", brain).json(),
            _post(client, "chest.png", chest).json(),
        )
        assert inside["in_domain"] is True and inside["domain_distance"] >= 0
        assert outside["in_domain"] is False and outside["status"] == "ok"
        assert outside["decision"] in ("abnormal", "normal")  # warn: still decided
        flagged = client.get("/api/studies", params={"in_domain": "false"}).json()
        assert [s["name"] for s in flagged] == ["chest.png"]
        within = client.get("/api/studies", params={"in_domain": "true"}).json()
        assert [s["name"] for s in within] == ["brain.png"]
        rows = list(csv.DictReader(io.StringIO(client.get("/api/export.csv").text)))
        assert {r["name"]: r["in_domain"] for r in rows} == {
            "brain.png": "True",
            "chest.png": "False",
        }
        (model,) = client.get("/api/models").json()
        assert model["domain_threshold"] > 0 and model["domain_check"] == "warn"
        page = client.get("/").text + client.get("/static/app.js").text
        assert 'id="filter-domain"' in page and "outside training domain" in page


def test_refuse_mode_stores_an_error_with_the_fix(guarded, tmp_path):
    checkpoint, _, chest = guarded
    with _client(checkpoint, tmp_path, domain_check="refuse") as client:
        study = _post(client, "chest.png", chest).json()
    assert study["status"] == "error" and study["decision"] is None
    assert OUT_OF_DOMAIN in study["error"] and "Fix:" in study["error"]
    assert study["in_domain"] is False


def store_columns() -> str:
    """The studies table's column list as the schema writes it."""
    from anomed.serve.store import _SCHEMA

    table = _SCHEMA.split("CREATE TABLE IF NOT EXISTS studies (")[1]
    return table.split(");")[0]


def test_a_database_from_before_the_guard_gets_the_new_columns(tmp_path):
    import sqlite3

    from anomed.serve.store import Store

    db = sqlite3.connect(tmp_path / "old.sqlite")
    columns = store_columns().replace("domain_distance REAL, in_domain INTEGER", "")
    db.execute(f"CREATE TABLE studies ({columns.rstrip().rstrip(',')})")
    db.close()
    store = Store(tmp_path / "old.sqlite")
    record = {"id": "a", "created": 1.0, "name": "x.png", "model": "m", "kind": "image"}
    record.update(file_kind="png", status="ok", files=[], sha256="0", size=1)
    store.add_study(record)
    assert store.study("a")["in_domain"] is None
    store.close()
