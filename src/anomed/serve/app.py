"""The FastAPI application: REST routes, the review page and the one JSON error shape.

Routes (OpenAPI at /docs): `GET /health`, `GET /api/models`, `POST /api/predict`,
`POST /api/studies` -> a job, `GET /api/jobs/{id}`, `GET /api/studies`, a study's files and
slices, its verdict, and `GET /api/export.csv`. Everything under /api/ needs the bearer token
when one is set (see guard.py); `/` serves the review page from `static/`.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import logging
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

import matplotlib
from fastapi import APIRouter, Depends, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from fastapi.security import HTTPBearer
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from anomed._version import __version__
from anomed.errors import AnomedError
from anomed.serve.errors import CODES, ApiError
from anomed.serve.guard import Guard
from anomed.serve.service import Service

STATIC = Path(__file__).parent / "static"
FILE_KEYS = {
    "image.png": "image",
    "heat.png": "heatmap",
    "overlay.png": "overlay",
    "anomaly.nii.gz": "anomaly_nifti",
    "slices.csv": "slices_csv",
}
MEDIA = {".png": "image/png", ".gz": "application/gzip", ".csv": "text/csv"}
EXPORT_FIELDS = [
    "id", "name", "model", "kind", "status", "score", "threshold", "decision", "n_slices",
    "max_slice", "verdict", "note", "reviewed_at", "created", "sha256", "error",
]  # fmt: skip
CSP = {  # the page loads only its own files; pictures come as blob: URLs
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
}
log = logging.getLogger("anomed.serve")


ModelName = Annotated[str | None, Query(description="model name; optional with one model")]


class VerdictIn(BaseModel):
    verdict: Literal["agree", "disagree", "unsure"]
    note: str = Field("", max_length=4000)


def jet_stops(n: int = 11) -> list[str]:
    """The heat layers' colour map as hex stops, for the page's colour bar."""
    cmap = matplotlib.colormaps["jet"]
    return [matplotlib.colors.to_hex(cmap(i / (n - 1))) for i in range(n)]


def study_json(record: dict[str, Any]) -> dict[str, Any]:
    """A stored study as the API shows it: URLs instead of file names, the verdict nested."""
    base = f"/api/studies/{record['id']}"
    urls = {FILE_KEYS[name]: f"{base}/files/{name}" for name in record["files"]}
    if record["kind"] == "volume":
        urls["slice_image"] = f"{base}/slices/{{index}}.png"
        urls["slice_heatmap"] = f"{base}/heat/{{index}}.png"
    verdict = None
    if record.get("verdict"):
        verdict = {k: record[k] for k in ("verdict", "note", "reviewed_at")}
    keep = ("id", "name", "model", "kind", "file_kind", "status", "score", "threshold",
            "decision", "error", "created", "n_slices", "max_slice", "slice_scores", "width",
            "height", "job_id", "sha256", "size")  # fmt: skip
    out = {k: record.get(k) for k in keep}
    out["map_range"] = [record.get("map_min"), record.get("map_max")]
    return {**out, "urls": urls, "verdict": verdict}


def _error_response(error: ApiError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if error.status == 401 else None
    return JSONResponse(error.payload(), status_code=error.status, headers=headers)


def _install_docs(app: FastAPI) -> None:
    """/docs from Swagger UI files shipped in a package (fastapi-offline), so the page works on
    a network without internet; FastAPI's CDN-based page when that package is absent."""
    try:
        assets = importlib.resources.files("fastapi_offline") / "static"
        assets = Path(str(assets))
    except ModuleNotFoundError:
        assets = None
    kwargs = {}
    if assets is not None and (assets / "swagger-ui-bundle.js").is_file():
        app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")
        kwargs = {
            "swagger_js_url": "/docs-assets/swagger-ui-bundle.js",
            "swagger_css_url": "/docs-assets/swagger-ui.css",
            "swagger_favicon_url": "/docs-assets/favicon.png",
        }

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="anomed serve", **kwargs)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        status = exc.status_code if exc.status_code in CODES else 400
        return _error_response(ApiError(status, str(exc.detail)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [
            f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in exc.errors()[:5]
        ]
        return _error_response(ApiError(422, "; ".join(parts) or "invalid request"))

    @app.exception_handler(AnomedError)
    async def anomed_error(request: Request, exc: AnomedError) -> JSONResponse:
        return _error_response(ApiError(422, " ".join(str(exc).split())))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        log.error("internal error on %s", request.url.path, exc_info=exc)
        return _error_response(ApiError(500, "internal error; the server log has the details."))


def create_app(service: Service) -> FastAPI:
    """The application over an opened `Service`; closing the app closes the service."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        service.close()

    app = FastAPI(
        title="anomed serve",
        version=__version__,
        description="Score medical images and volumes with trained anomed detectors; review "
        "them at /. With a token, every /api/ call needs `Authorization: Bearer <token>`.",
        lifespan=lifespan,
        docs_url=None,
    )
    _install_docs(app)
    _install_error_handlers(app)
    app.state.service = service
    app.include_router(_api_routes(service), prefix="/api")

    @app.get("/health", tags=["service"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "models": len(service.models), "version": __version__}

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-cache", **CSP})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(Guard, token=service.cfg.token, max_bytes=service.cfg.max_upload_bytes)
    return app


def _api_routes(service: Service) -> APIRouter:
    # declared for /docs ("Authorize"); the check itself is in Guard, before any body is read
    api = APIRouter(dependencies=[Depends(HTTPBearer(auto_error=False))])

    @api.get("/models", tags=["models"])
    def models() -> list[dict[str, Any]]:
        stops = jet_stops()
        return [{**m.describe(), "colour_scale": stops} for m in service.models.values()]

    @api.post("/predict", tags=["predict"])
    def predict(file: Annotated[UploadFile, File()], model: ModelName = None) -> dict[str, Any]:
        """Score one image (PNG/JPEG/TIFF/BMP), DICOM file, zipped DICOM series or NIfTI."""
        served = service.model(model)
        study_id, staged = service.stage(file.file, file.filename)
        return study_json(service.score(served, study_id, staged))

    @api.post("/studies", status_code=202, tags=["studies"])
    def submit(
        files: Annotated[list[UploadFile], File()], model: ModelName = None
    ) -> dict[str, Any]:
        """Upload several files as one job; follow it at `status_url`."""
        served = service.model(model)
        staged, refused = [], []
        for upload in files:
            try:
                staged.append(service.stage(upload.file, upload.filename))
            except ApiError as exc:
                name = (upload.filename or "upload")[:200]
                refused.append({"name": name, "status": exc.status, "message": exc.message})
        job_id = service.submit_job(served, staged, refused)
        return {"job_id": job_id, "status_url": f"/api/jobs/{job_id}", "total": len(files)}

    @api.get("/jobs/{job_id}", tags=["studies"])
    def job(job_id: str) -> dict[str, Any]:
        found = service.store.job(job_id)
        if found is None:
            raise ApiError(404, "no such job.")
        total = max(found["total"], 1)
        return {**found, "progress": found["done"] / total}

    @api.get("/studies", tags=["studies"])
    def studies(
        model: ModelName = None,
        decision: Literal["abnormal", "normal"] | None = None,
        reviewed: bool | None = None,
    ) -> list[dict[str, Any]]:
        """Every study, highest score first, with its verdict."""
        rows = service.store.studies(model=model, decision=decision, reviewed=reviewed)
        return [study_json(r) for r in rows]

    @api.get("/studies/{study_id}", tags=["studies"])
    def study(study_id: str) -> dict[str, Any]:
        return study_json(_study(service, study_id))

    @api.put("/studies/{study_id}/verdict", tags=["review"])
    def set_verdict(study_id: str, body: VerdictIn) -> dict[str, Any]:
        if not service.store.set_verdict(study_id, body.verdict, body.note):
            raise ApiError(404, "no such study.")
        return study_json(_study(service, study_id))

    @api.delete("/studies/{study_id}/verdict", tags=["review"])
    def clear_verdict(study_id: str) -> dict[str, Any]:
        service.store.clear_verdict(study_id)
        return study_json(_study(service, study_id))

    @api.get("/studies/{study_id}/files/{name}", tags=["studies"])
    def study_file(study_id: str, name: str) -> FileResponse:
        record = _study(service, study_id)
        if name not in record["files"]:
            raise ApiError(404, f"study has no file {name[:40]!r}.")
        return _file(service.study_dir(record["id"]) / name, f"{record['id']}_{name}")

    @api.get("/studies/{study_id}/slices/{index}.png", tags=["studies"])
    def slice_image(study_id: str, index: int) -> FileResponse:
        return _slice(service, study_id, "slices", index)

    @api.get("/studies/{study_id}/heat/{index}.png", tags=["studies"])
    def slice_heat(study_id: str, index: int) -> FileResponse:
        return _slice(service, study_id, "heat", index)

    @api.get("/export.csv", tags=["review"])
    def export(
        model: ModelName = None,
        threshold: Annotated[float | None, Query(allow_inf_nan=False)] = None,
    ) -> Response:
        """Scores and verdicts as CSV; with `threshold`, also the decision at that threshold."""
        rows = service.store.studies(model=model)
        return Response(
            export_csv(rows, threshold),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="anomed-review.csv"'},
        )

    return api


def _study(service: Service, study_id: str) -> dict[str, Any]:
    record = service.store.study(study_id)
    if record is None:
        raise ApiError(404, "no such study.")
    return record


def _file(path: Path, download_name: str) -> FileResponse:
    media = MEDIA.get(path.suffix, "application/octet-stream")
    inline = path.suffix == ".png"
    return FileResponse(
        path,
        media_type=media,
        filename=None if inline else download_name,
        headers={"Cache-Control": "private, max-age=3600"},
    )


def _slice(service: Service, study_id: str, layer: str, index: int) -> FileResponse:
    record = _study(service, study_id)
    path = service.study_dir(record["id"]) / layer / f"{index:04d}.png"
    if record["kind"] != "volume" or not 0 <= index < (record["n_slices"] or 0):
        raise ApiError(404, "no such slice.")
    if not path.is_file():
        raise ApiError(404, "this slice is empty (not scored), so it has no heat layer.")
    return _file(path, path.name)


def _cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet will not run as a formula."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value


def export_csv(rows: list[dict[str, Any]], threshold: float | None = None) -> str:
    """Scores and verdicts, one row per study; `decision_at_review_threshold` when given."""
    fields = EXPORT_FIELDS + (
        ["review_threshold", "decision_at_review_threshold"] if threshold is not None else []
    )
    out = io.StringIO()
    writer = csv.DictWriter(out, fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        row = dict(row)
        if threshold is not None:
            score = row.get("score")
            row["review_threshold"] = threshold
            row["decision_at_review_threshold"] = (
                None if score is None else ("abnormal" if score > threshold else "normal")
            )
        writer.writerow({k: _cell(row.get(k)) for k in fields})
    return out.getvalue()
