"""Score one retrieved series exactly as `anomed predict` scores the same files, and write the
DICOM objects that go back to the PACS.

A series of several single-frame images with plane geometry (MR, CT, PET) is one volume: it is
scored as `anomed predict SERIES_FOLDER` scores it (`predict_volume`). Anything else (CR, DX,
MG radiographs, a lone image, one multi-frame file) is scored file by file, as
`anomed predict FILE.dcm` scores each. The SEG and Parametric Map are the ones
`predict --dicom-out` writes (anomed.export.dicom_out); the SR adds the scores and decisions.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from anomed.engine.detector import Detector
from anomed.engine.volumes import VolumePrediction, predict_volume
from anomed.errors import AnomedError
from anomed.export.dicom_out import fill_type2, is_projection, write_dicom_outputs
from anomed.pacs.sr import ModelLabel, ScoredItem, write_sr

# result objects and other non-image storage classes: never scored
_NOT_IMAGES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "a Segmentation",
    "1.2.840.10008.5.1.4.1.1.30": "a Parametric Map",
}
_KINDS = ("seg", "pmap", "sr")


@dataclass
class ItemResult:
    """One scored input (the series folder, or one file of it)."""

    source: Path
    score: float
    decision: str | None
    map_path: Path
    seg: Path | None = None
    pmap: Path | None = None
    note: str | None = None
    volume: VolumePrediction | None = None  # predict_volume's result (slice scores, CSV)


@dataclass
class SeriesResult:
    kind: str  # "volume" or "images"
    items: list[ItemResult]
    sr: Path | None = None
    notes: list[str] = field(default_factory=list)

    def objects(self) -> list[tuple[str, Path]]:
        """(kind, path) of every DICOM object to send."""
        found = [(k, getattr(i, k)) for i in self.items for k in ("seg", "pmap")]
        found.append(("sr", self.sr))
        return [(k, p) for k, p in found if p is not None]

    @property
    def score(self) -> float:
        return max(i.score for i in self.items)


def save_instances(datasets: list[pydicom.Dataset], folder: Path) -> list[Path]:
    """Write retrieved instances as DICOM files folder/IM00001.dcm, ... (names never come from
    the data); the folder is emptied first."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    paths = []
    for k, ds in enumerate(datasets):
        paths.append(folder / f"IM{k + 1:05d}.dcm")
        ds.save_as(paths[-1], enforce_file_format=True)
    return paths


def check_images(paths: list[Path], what: str) -> list[pydicom.Dataset]:
    """The headers of retrieved instances; AnomedError when they are not images to score."""
    headers = []
    for path in paths:
        try:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception as exc:  # noqa: BLE001 - any damage in a header
            raise AnomedError(f"{what}: {path.name} is not readable DICOM ({exc})") from None
        uid = str(ds.get("SOPClassUID", ""))
        kind = _NOT_IMAGES.get(uid)
        kind = kind or ("a structured report" if ds.get("Modality") == "SR" else None)
        if kind or str(ds.get("Manufacturer", "")) == "anomed":
            raise AnomedError(f"{what}: {kind or 'an anomed result'}, not an image: not scored")
        headers.append(ds)
    return headers


def is_volume(headers: list[pydicom.Dataset]) -> bool:
    """Several single-frame images, each with plane geometry: one volume."""
    return len(headers) > 1 and not any(
        is_projection(ds) or int(ds.get("NumberOfFrames", 1) or 1) > 1 for ds in headers
    )


def _dicom_kind(send: tuple[str, ...]) -> str | None:
    seg, pmap = "seg" in send, "pmap" in send
    return "both" if seg and pmap else "seg" if seg else "pmap" if pmap else None


def score_item(detector: Detector, source: Path, out: Path, send: tuple[str, ...]) -> ItemResult:
    """`anomed predict SOURCE --dicom-out ...` for one input: score, map, SEG/PM."""
    vol = predict_volume(detector, source, out / "volumes")
    item = ItemResult(source, vol.score, vol.decision, vol.map_path, volume=vol)
    kind = _dicom_kind(send)
    if kind is not None:
        written = write_dicom_outputs(
            source, vol.map_path, kind, detector.threshold, detector.info.run.method,
            detector.map_range,
        )  # fmt: skip
        item.seg, item.pmap, item.note = written.seg, written.pmap, written.note
    return item


def model_label(detector: Detector) -> ModelLabel:
    run = detector.info.run
    weights = run.backbone.pretrained or "random-init"
    backbone = f"{run.backbone.model} ({weights})"
    return ModelLabel(run.method, run.preset, backbone, detector.threshold)


def score_series(
    detector: Detector, input_dir: Path, out: Path, send: tuple[str, ...] = _KINDS
) -> SeriesResult:
    """Score the series held in `input_dir` (its files only); write maps and DICOM objects
    under `out` (emptied first). AnomedError when it cannot be scored."""
    unknown = set(send) - set(_KINDS)
    if unknown:
        raise AnomedError(f"--send {' '.join(sorted(unknown))}: use seg, pmap and/or sr")
    paths = sorted(input_dir.glob("*.dcm"))
    headers = check_images(paths, f"series {input_dir.name}")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    volume = is_volume(headers)
    sources = [input_dir] if volume else paths
    items = [score_item(detector, s, out, send) for s in sources]
    result = SeriesResult("volume" if volume else "images", items)
    result.notes = sorted({i.note for i in items if i.note})
    if "sr" in send:
        by_path = dict(zip(paths, headers, strict=True))
        scored = [
            ScoredItem([fill_type2(by_path[p]) for p in (paths if volume else [i.source])],
                       i.score, i.decision)
            for i in items
        ]  # fmt: skip
        result.sr = write_sr(scored, model_label(detector), out / f"{_stem(input_dir)}_sr.dcm")
    return result


def _stem(path: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", path.name) or "series"
