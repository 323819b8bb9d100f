"""The SQLite store: WAL mode, verdicts that survive a restart, filters, interrupted jobs."""

import pytest

from anomed.serve.store import Store


def study(i: int, score, decision, **extra):
    return {
        "id": f"{i:016x}", "created": float(i), "name": f"s{i}.png", "model": "m",
        "kind": "image", "file_kind": "png", "status": "ok" if score is not None else "error",
        "score": score, "threshold": 0.5, "decision": decision, "files": ["image.png"],
        "sha256": "0" * 64, "size": 10, **extra,
    }  # fmt: skip


def test_verdicts_survive_reopening(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    assert store.journal_mode == "wal"
    store.add_study(study(1, 0.9, "abnormal"))
    store.add_study(study(2, 0.1, "normal", slice_scores=[None, 0.1]))
    store.add_study(study(3, None, None, error="non-finite"))
    assert store.set_verdict(f"{1:016x}", "disagree", "looks fine to me")
    assert not store.set_verdict("nope", "agree", "")
    with pytest.raises(ValueError):
        store.set_verdict(f"{2:016x}", "maybe", "")
    store.close()

    store = Store(tmp_path / "db.sqlite")
    rows = store.studies()
    assert [r["score"] for r in rows] == [0.9, 0.1, None]  # by score, errors last
    assert rows[0]["verdict"] == "disagree" and rows[0]["note"] == "looks fine to me"
    assert rows[1]["slice_scores"] == [None, 0.1]
    assert [r["name"] for r in store.studies(reviewed=False)] == ["s2.png", "s3.png"]
    assert [r["name"] for r in store.studies(decision="abnormal")] == ["s1.png"]
    assert store.clear_verdict(f"{1:016x}") and store.studies(reviewed=True) == []


def test_unfinished_jobs_are_marked_interrupted_on_restart(tmp_path):
    store = Store(tmp_path / "db.sqlite")
    store.add_job("j1", "m", 3)
    store.update_job("j1", status="running", done=1)
    with pytest.raises(ValueError):
        store.update_job("j1", total=5)  # only progress columns may change
    store.close()
    job = Store(tmp_path / "db.sqlite").job("j1")
    assert job["status"] == "interrupted" and job["done"] == 1 and job["finished"] is not None
