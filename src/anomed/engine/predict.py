"""Score the user's own images with a checkpoint: a score, a yes/no and a heatmap per image.

A bad file is reported and skipped; the run goes on. Reports are written only at the end.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from anomed.data.datasets import resize_image
from anomed.data.io import is_image_file, read_image
from anomed.data.volumes import find_volumes, is_volume_path
from anomed.engine.checkpoint import CheckpointInfo, load_checkpoint
from anomed.engine.device import autocast, resolve_device
from anomed.engine.volumes import predict_volume
from anomed.errors import AnomedError
from anomed.methods.base import AnomalyMethod
from anomed.viz.overlay import save_overlay_png


@dataclass
class PredictReport:
    """Per-image results and the files that could not be read."""

    output_dir: Path
    rows: list[dict] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason)

    def summary_lines(self) -> list[str]:
        lines = [f"{r['file']}: score {r['score']:.4f} -> {r['decision']}" for r in self.rows]
        lines += [f"skipped {path}: {why}" for path, why in self.skipped]
        n_abn = sum(r["decision"] == "abnormal" for r in self.rows)
        lines.append(
            f"{len(self.rows)} images scored ({n_abn} abnormal), {len(self.skipped)} "
            f"skipped; predictions.csv, predictions.json and overlays/ in {self.output_dir}"
        )
        return lines


def collect_inputs(
    inputs: Sequence[str | Path],
) -> tuple[list[Path], list[Path], list[tuple[str, str]]]:
    """Expand inputs into (2D image files, volumes, problems): folders are searched recursively;
    a DICOM series folder, .nii and .nii.gz files are volumes."""
    files: list[Path] = []
    volumes: list[Path] = []
    problems: list[tuple[str, str]] = []
    for item in map(Path, inputs):
        if not item.exists():
            problems.append((str(item), "no such file or folder"))
        elif is_volume_path(item):
            volumes.append(item)
        elif item.is_dir():
            found = sorted(p for p in item.rglob("*") if p.is_file() and is_image_file(p))
            vols = [v for v in find_volumes(item) if "lesion_mask" not in v.name]
            if not found and not vols:
                problems.append(
                    (
                        str(item),
                        "folder holds no PNG/JPEG/BMP/TIFF images, NIfTI files or DICOM series",
                    )
                )
            files += found
            volumes += vols
        elif not is_image_file(item):
            problems.append(
                (
                    str(item),
                    f"not an image file (extension {item.suffix or 'none'!r}); "
                    "use PNG, JPEG, BMP, TIFF, NIfTI or DICOM",
                )
            )
        else:
            files.append(item)
    return files, volumes, problems


def _readable(files: Sequence[Path], skipped: list) -> Iterator[tuple[Path, np.ndarray]]:
    for path in files:
        try:
            yield path, read_image(path)
        except AnomedError as exc:
            skipped.append((str(path), str(exc)))


def _chunks(items: Iterator, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


@torch.no_grad()
def _score(method: AnomalyMethod, images: list[np.ndarray], device, amp: bool):
    size = method.backbone.image_size
    batch = np.stack([resize_image(im, size).transpose(2, 0, 1) for im in images])
    with autocast(device, amp):
        out = method(torch.from_numpy(batch).float().to(device))
    return out.image_score.float().cpu().numpy(), out.anomaly_map.float().cpu().numpy()


def _overlay_name(path: Path, used: set[str]) -> str:
    name = f"{path.stem}_overlay.png"
    n = 1
    while name in used:
        name, n = f"{path.stem}_{n}_overlay.png", n + 1
    used.add(name)
    return name


def predict_run(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    device: str = "auto",
    batch_size: int = 16,
    progress: bool = True,
    compile_backbone: bool = False,
) -> PredictReport:
    """Score every readable image under `inputs`; write overlays, CSV and JSON.

    `compile_backbone` torch.compiles the frozen blocks: worth it for large folders only."""
    files, volumes, problems = collect_inputs(inputs)
    if not files and not volumes:
        detail = "; ".join(f"{p}: {why}" for p, why in problems) or "nothing given"
        raise AnomedError(f"no images to score ({detail}). Fix: pass image files or folders.")
    dev = resolve_device(device)
    method, info = load_checkpoint(checkpoint, dev)
    if compile_backbone:
        method.backbone.compile_blocks()
    report = PredictReport(Path(output_dir), skipped=list(problems))
    overlays = report.output_dir / "overlays"
    overlays.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=not progress)
    for chunk in _chunks(_readable(files, report.skipped), batch_size):
        scores, maps = _score(method, [im for _, im in chunk], dev, info.run.train.amp)
        for (path, image), score, amap in zip(chunk, scores, maps, strict=True):
            name = _overlay_name(path, used)
            save_overlay_png(
                overlays / name, image, amap, info.calibration.map_min, info.calibration.map_max
            )
            report.rows.append(_row(path, float(score), info, f"overlays/{name}"))
        bar.update(len(chunk))
    bar.close()
    for path in volumes:
        try:
            vol = predict_volume(
                method, info, path, report.output_dir / "volumes", batch_size=batch_size
            )
        except AnomedError as exc:
            report.skipped.append((str(path), str(exc)))
            continue
        report.rows.append(
            {
                "file": str(path),
                "score": vol.score,
                "threshold": info.calibration.threshold,
                "decision": vol.decision,
                "overlay": str(vol.map_path.relative_to(report.output_dir)),
            }
        )
    _write_reports(report)
    return report


def _row(path: Path, score: float, info: CheckpointInfo, overlay: str) -> dict:
    threshold = info.calibration.threshold
    return {
        "file": str(path),
        "score": score,
        "threshold": threshold,
        "decision": "abnormal" if score > threshold else "normal",
        "overlay": overlay,
    }


def _write_reports(report: PredictReport) -> None:
    fields = ["file", "score", "threshold", "decision", "overlay"]
    with open(report.output_dir / "predictions.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(report.rows)
    payload = {
        "predictions": report.rows,
        "skipped": [{"file": f, "reason": r} for f, r in report.skipped],
    }
    (report.output_dir / "predictions.json").write_text(json.dumps(payload, indent=1))
