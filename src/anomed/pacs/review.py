"""PACS-sourced results on `anomed serve`'s worklist (`anomed pacs watch --review`).

With `--review`, each scored input of a series also becomes a study in the review service's
database (`<data-dir>/anomed-serve.sqlite`, pictures in `<data-dir>/studies/<id>/`), drawn by
the same code that draws an uploaded volume; `anomed serve RUN --data-dir <data-dir>` then lists
it with its heatmaps beside the uploads. A radiograph is a one-slice volume there. Study ids
derive from the series and input, so a worker restarted mid-series never lists one twice.
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import replace
from pathlib import Path

from anomed.engine.detector import Detector
from anomed.engine.volumes import VolumePrediction
from anomed.errors import AnomedError
from anomed.outputs import finite_or_none

SERVE_DB = "anomed-serve.sqlite"


def _serve():
    try:
        from anomed.serve.service import model_names
        from anomed.serve.store import Store
        from anomed.serve.studies import volume_review
    except ImportError as exc:
        raise AnomedError(f"--review needs the serve extra ({exc.name}). Fix: pip install "
                          "'anomed[serve]' or drop --review.") from exc  # fmt: skip
    return model_names, Store, volume_review


def review_id(series_uid: str, source: Path) -> str:
    return hashlib.sha256(f"{series_uid}/{source.name}".encode()).hexdigest()[:16]


def add_review_study(
    data_dir: Path, detector: Detector, series: dict, source: Path, vol: VolumePrediction
) -> str:
    """List one scored input on the review worklist (idempotent); returns its study id."""
    model_names, Store, volume_review = _serve()
    study_id = review_id(series["series_uid"], source)
    store = Store(data_dir / SERVE_DB, recover_jobs=False)
    try:
        if store.study(study_id) is not None:
            return study_id
        folder = data_dir / "studies" / study_id
        shutil.rmtree(folder, ignore_errors=True)
        (folder / "predict").mkdir(parents=True)
        copy = replace(
            vol,
            map_path=Path(shutil.copy2(vol.map_path, folder / "predict")),
            csv_path=Path(shutil.copy2(vol.csv_path, folder / "predict")),
        )
        record = volume_review(detector, source, copy, folder)
        files = sorted(source.glob("*.dcm")) if source.is_dir() else [source]
        name = " ".join(x for x in ("PACS", series["modality"], series["description"]) if x)
        run = detector.run_dir or Path("run")
        store.add_study(
            finite_or_none(
                {
                    **record, "id": study_id, "created": series["found"],
                    "name": f"{name} {source.name}"[:200], "model": model_names([str(run)])[0][0],
                    "kind": "volume", "file_kind": "dicom", "threshold": detector.threshold,
                    "sha256": hashlib.sha256(series["series_uid"].encode()).hexdigest(),
                    "size": sum(f.stat().st_size for f in files),
                }
            )
        )  # fmt: skip
    finally:
        store.close()
    return study_id
