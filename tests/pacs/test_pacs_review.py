"""`pacs watch --review`: PACS-sourced results on `anomed serve`'s worklist (same data dir),
with their pictures and the scores the SR carries."""

from __future__ import annotations

import pytest
from pacskit import make_watcher

pytest.importorskip("fastapi", reason="needs the serve extra: pip install 'anomed[serve]'")


def test_reviewed_series_appear_on_the_serve_worklist(
    detector, checkpoint, orthanc, sources, tmp_path
):
    from fastapi.testclient import TestClient

    from anomed.serve import ServeConfig, build_app

    orthanc.upload(sources["cr"])
    watcher = make_watcher(detector, orthanc, tmp_path / "d", review=True)
    [series] = watcher.run()[0].sent
    row = watcher.ledger.series(series)
    watcher.close()
    assert all(r["review"] for r in row["results"])

    cfg = ServeConfig(runs=[str(checkpoint)], data_dir=str(tmp_path / "d"), device="cpu")
    with TestClient(build_app(cfg)) as client:
        studies = client.get("/api/studies").json()
        assert sorted(s["id"] for s in studies) == sorted(r["review"] for r in row["results"])
        model = client.get("/api/models").json()[0]["name"]
        for study, result in zip(
            sorted(studies, key=lambda s: s["id"]),
            sorted(row["results"], key=lambda r: r["review"]),
            strict=True,
        ):
            assert study["name"].startswith("PACS CR") and study["model"] == model
            assert (study["score"], study["decision"]) == (result["score"], result["decision"])
            assert client.get(study["urls"]["overlay"]).status_code == 200
            assert client.get(study["urls"]["slice_heatmap"].format(index=0)).status_code == 200
