"""The REST API end to end through FastAPI's test client: every route and every bad input."""

import csv
import io
import time

import httpx
import nibabel as nib
import numpy as np
import pytest
from conftest import LiveServer, dicom_zip, encoded, nifti_bytes, png_bytes, png_header
from fastapi.testclient import TestClient
from PIL import Image

from anomed.serve import ServeConfig, build_app


def make_client(checkpoint, data_dir, **settings) -> TestClient:
    cfg = ServeConfig(
        runs=[f"brain={checkpoint}"], data_dir=str(data_dir), device="cpu", **settings
    )
    return TestClient(build_app(cfg))


@pytest.fixture(scope="module")
def client(serve_checkpoint, tmp_path_factory):
    with make_client(serve_checkpoint, tmp_path_factory.mktemp("data")) as c:
        yield c


def post(client, name, data, **params):
    return client.post("/api/predict", params=params, files={"file": (name, data)})


def wait_job(client, url):
    for _ in range(300):
        job = client.get(url).json()
        if job["status"] == "done":
            return job
        time.sleep(0.05)
    raise AssertionError(f"job did not finish: {job}")


def test_health_models_docs_and_page(client):
    assert client.get("/health").json()["status"] == "ok"
    (model,) = client.get("/api/models").json()
    assert model["name"] == "brain" and model["method"] == "mediclip"
    assert model["threshold"] == 0.8 and model["backbone"]["random_init"] is True
    assert model["training"]["epochs"] == 0 and len(model["colour_scale"]) == 11
    assert "/api/predict" in client.get("/openapi.json").json()["paths"]
    assert "swagger" in client.get("/docs").text.lower()
    page = client.get("/")
    assert page.status_code == 200 and "anomed review" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert client.get("/static/app.js").status_code == 200


def test_predict_png_gives_score_decision_and_pictures(client):
    r = post(client, "scan.png", png_bytes(80, 90))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["status"] == "ok" and np.isfinite(body["score"]) and body["threshold"] == 0.8
    assert body["decision"] == ("abnormal" if body["score"] > 0.8 else "normal")
    assert body["name"] == "scan.png" and body["kind"] == "image"
    image = Image.open(io.BytesIO(client.get(body["urls"]["image"]).content))
    heat = Image.open(io.BytesIO(client.get(body["urls"]["heatmap"]).content))
    assert image.size == heat.size == (90, 80) and heat.mode == "RGB"
    overlay = client.get(body["urls"]["overlay"])
    assert overlay.headers["content-type"] == "image/png"
    assert client.get(f"/api/studies/{body['id']}").json()["score"] == body["score"]


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF", "BMP"])
def test_predict_other_image_formats(client, fmt):
    r = post(client, f"x.{fmt.lower()}", encoded(fmt))
    assert r.status_code == 200 and r.json()["file_kind"] == {"JPEG": "jpeg"}.get(fmt, fmt.lower())


@pytest.mark.parametrize("gz", [True, False])
def test_predict_nifti_gives_slice_scores_and_a_map(client, gz):
    r = post(client, "head.nii.gz" if gz else "head.nii", nifti_bytes((40, 40, 8), gz=gz))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["kind"] == "volume" and body["n_slices"] == 8
    scores = body["slice_scores"]
    assert len(scores) == 8 and scores[0] is None and scores[-1] is None  # empty end slices
    assert body["score"] == max(s for s in scores if s is not None)
    nifti = client.get(body["urls"]["anomaly_nifti"]).content
    assert nib.Nifti1Image.from_bytes(__import__("gzip").decompress(nifti)).shape == (40, 40, 8)
    best = body["max_slice"]
    assert client.get(body["urls"]["slice_image"].format(index=best)).status_code == 200
    assert client.get(body["urls"]["slice_heatmap"].format(index=best)).status_code == 200
    assert client.get(body["urls"]["slice_heatmap"].format(index=0)).status_code == 404
    assert client.get(body["urls"]["slice_image"].format(index=99)).status_code == 404
    rows = list(csv.DictReader(io.StringIO(client.get(body["urls"]["slices_csv"]).text)))
    assert len(rows) == sum(s is not None for s in scores)


def test_predict_dicom_file_and_zipped_series(client, tmp_path):
    r = post(client, "series.zip", dicom_zip(tmp_path / "a", (32, 32, 5)))
    assert r.status_code == 200, r.text
    assert r.json()["file_kind"] == "zip" and r.json()["n_slices"] == 5
    one = sorted((tmp_path / "a").glob("*.dcm"))[2].read_bytes()  # a non-empty slice
    r = post(client, "IM0001", one)  # no extension: typed by the DICM marker
    assert r.status_code == 200, r.text
    assert r.json()["file_kind"] == "dicom" and r.json()["n_slices"] == 1


BAD_UPLOADS = [
    ("empty.png", b"", 400),
    ("notes.png", b"just some text, not a picture\n" * 4, 415),
    ("cut.png", png_bytes(80, 90)[:120], 422),
    ("../../etc/cron.d/x.png", png_bytes(), 400),
    ("..\\windows\\x.png", png_bytes(), 400),
    ("bomb.png", png_header(40_000, 40_000), 413),
    ("cut.nii.gz", nifti_bytes()[:400], 422),
    ("fake.zip", b"PK\x03\x04" + b"\0" * 100, 422),
]


@pytest.mark.parametrize(("name", "data", "status"), BAD_UPLOADS)
def test_bad_uploads_get_one_json_error_and_the_server_keeps_serving(client, name, data, status):
    before = len(client.get("/api/studies").json())
    r = post(client, name, data)
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error", "message"} and "Traceback" not in body["message"]
    assert "/studies/" not in body["message"]  # no server path in the answer
    assert len(client.get("/api/studies").json()) == before  # nothing recorded
    assert post(client, "ok.png", png_bytes()).status_code == 200


def test_bad_requests(client):
    cases = [
        (client.post("/api/predict"), 422),  # no file field
        (post(client, "a.png", png_bytes(), model="nope"), 400),
        (client.get("/api/studies/0123456789abcdef"), 404),
        (client.get("/api/jobs/../../etc"), 404),
        (client.get("/api/studies", params={"decision": "maybe"}), 422),
        (client.put("/api/studies/x/verdict", json={"verdict": "agree"}), 404),
        (client.get("/api/nothing-here"), 404),
        (client.delete("/api/models"), 405),
        (client.get("/api/export.csv", params={"threshold": "nan"}), 422),
        (
            client.post(
                "/api/predict",
                content=b"--x\r\nbroken",
                headers={"content-type": "multipart/form-data; boundary=x"},
            ),
            422,  # parsed as a form without the file
        ),
        (
            client.post(
                "/api/predict", content=b"x", headers={"content-type": "multipart/form-data"}
            ),
            400,  # no boundary: not parseable at all
        ),
    ]
    for response, status in cases:
        assert response.status_code == status, response.text
        assert set(response.json()) == {"error", "message"}


def test_non_finite_scores_are_errors_never_normal(client):
    model = client.app.state.service.models["brain"]
    real = model.batcher.score_fn
    model.batcher.score_fn = lambda x: (np.full(len(x), np.nan), np.zeros(x.shape[:3]))
    try:
        body = post(client, "scan.png", png_bytes()).json()
        r = post(client, "head.nii.gz", nifti_bytes())
    finally:
        model.batcher.score_fn = real
    assert body["status"] == "error" and body["decision"] is None and body["score"] is None
    assert "non-finite" in body["error"]
    assert r.status_code == 422 and "non-finite" in r.json()["message"]


def test_studies_job_verdict_export_and_restart(serve_checkpoint, tmp_path):
    files = [
        ("files", ("=HYPERLINK(1).png", png_bytes(seed=1))),
        ("files", ("head.nii.gz", nifti_bytes())),
        ("files", ("readme.txt", b"hello")),
    ]
    with make_client(serve_checkpoint, tmp_path) as c:
        r = c.post("/api/studies", files=files)
        assert r.status_code == 202
        job = wait_job(c, r.json()["status_url"])
        assert (job["total"], job["done"], job["failed"], job["progress"]) == (3, 3, 1, 1.0)
        assert job["errors"][0]["name"] == "readme.txt" and job["errors"][0]["status"] == 415
        studies = c.get("/api/studies").json()
        assert len(studies) == 2 and studies[0]["score"] >= studies[1]["score"]
        target = studies[1]["id"]
        r = c.put(f"/api/studies/{target}/verdict", json={"verdict": "disagree", "note": "ok"})
        assert r.json()["verdict"]["verdict"] == "disagree"
        assert [s["id"] for s in c.get("/api/studies", params={"reviewed": True}).json()] == [
            target
        ]
    with make_client(serve_checkpoint, tmp_path) as c:  # a restart keeps studies and verdicts
        assert c.get(f"/api/studies/{target}").json()["verdict"]["note"] == "ok"
        text = c.get("/api/export.csv", params={"threshold": 0.5}).text
        rows = {r["id"]: r for r in csv.DictReader(io.StringIO(text))}
        assert rows[target]["verdict"] == "disagree" and rows[target]["note"] == "ok"
        assert "'=HYPERLINK(1).png" in [r["name"] for r in rows.values()]
        assert all(r["decision_at_review_threshold"] == "abnormal" for r in rows.values()) or any(
            float(r["score"]) <= 0.5 for r in rows.values()
        )


def test_real_uvicorn_token_and_upload_cap(serve_checkpoint, tmp_path):
    """Through a real server: the token is checked before the body is read, an oversize body
    is refused while it streams in, and the server goes on serving."""
    app = build_app(
        ServeConfig(
            runs=[str(serve_checkpoint)],
            data_dir=str(tmp_path),
            device="cpu",
            token="s3cret-token",
            max_upload_mb=0.25,
        )
    )
    good = {"Authorization": "Bearer s3cret-token"}
    with LiveServer(app) as server, httpx.Client(base_url=server.url, timeout=30) as http:
        assert http.get("/health").status_code == 200 and http.get("/").status_code == 200
        r = http.get("/api/models")
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "unauthorized"
        assert http.get("/api/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = http.post("/api/predict", files={"file": ("a.png", png_bytes())})
        assert r.status_code == 401
        r = http.post(
            "/api/predict", files={"file": ("big.png", png_bytes(1000, 1000))}, headers=good
        )
        assert r.status_code == 413 and r.json()["error"] == "too_large"

        def chunks():  # no Content-Length: the cap is enforced on the bytes as they arrive
            yield b"--b\r\nContent-Disposition: form-data; name=file; filename=x.png\r\n\r\n"
            for _ in range(100):
                yield b"\0" * 65536

        headers = {**good, "content-type": "multipart/form-data; boundary=b"}
        try:
            status = http.post("/api/predict", content=chunks(), headers=headers).status_code
        except httpx.TransportError:  # the server may close before the client stops sending
            status = 413
        assert status == 413
        assert not any((tmp_path / "studies").iterdir())
        r = http.post("/api/predict", files={"file": ("a.png", png_bytes())}, headers=good)
        assert r.status_code == 200 and r.json()["status"] == "ok"
