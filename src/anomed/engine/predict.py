"""Score the user's own images with a checkpoint: a score, a yes/no and a heatmap per input.

Each input stands alone: a file that cannot be read, a volume that fails, a NaN score becomes
one error row and the run goes on. Rows are streamed to `predictions.csv` / `.jsonl` as they
come (an interrupted run keeps what it scored); `predictions.json` is written at the end with
the summary. The output folder is checked before any work (see anomed.outputs).
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from anomed.config import Positive, coerce
from anomed.data.io import is_image_file
from anomed.data.volumes import find_volumes, is_volume_path
from anomed.engine.detector import Detector, Prediction
from anomed.engine.domain import DomainCheck, check_mode, count_flags, refuse_message
from anomed.errors import AnomedError, display_text
from anomed.export.runtime import RUNTIMES, load_runtime_detector
from anomed.outputs import check_output_dir, clear_dir, dumps_json, write_json
from anomed.viz.overlay import save_prediction_png

MAX_BATCH = 256  # predict holds a batch's display copies (<= 1024 px) in memory: <= ~3 GiB
FIELDS = [
    "file",
    "status",
    "score",
    "threshold",
    "decision",
    "domain_distance",
    "in_domain",
    "error",
    "overlay",
    "slices",
]
# Folder names and file-name parts that mark ground-truth masks inside a dataset folder.
MASK_FOLDERS = frozenset(
    {"mask", "masks", "ground_truth", "ground_true", "gt", "anomaly_mask", "labels", "label"}
)
MASK_OR_HIDDEN = "mask or hidden file"
NO_GUARD_HINT = "it was saved before the guard existed (retrain to record its training domain)"
NOT_IMAGE = "not an image or volume file"
NOT_REGULAR = "not a regular file (a pipe, socket or device)"
BROKEN_LINK = (
    "broken symbolic link (its target is missing, or links form a loop). Fix: restore the "
    "target or remove the link."
)
MASK_NAME = re.compile(r"(^|[_\-. ])(mask|masks|gt|seg|label)([_\-. ]\d+)?$", re.IGNORECASE)


def display_path(path: str | Path) -> str:
    """A path as printable one-line UTF-8 text (undecodable bytes in a file name shown as
    \\xNN, a newline as \\n)."""
    return display_text(os.fsdecode(path))


@dataclass
class PredictReport:
    """Per-input rows (status ok or error) and what was left out on purpose."""

    output_dir: Path
    rows: list[dict] = field(default_factory=list)
    excluded: list[tuple[str, str]] = field(default_factory=list)  # (path, why): masks etc.

    @property
    def n_failed(self) -> int:
        return sum(r["status"] == "error" for r in self.rows)

    def dicom_lines(self) -> list[str]:
        """What --dicom-out wrote, and for which inputs it did nothing and why."""
        seg = sum(bool(r.get("dicom_seg")) for r in self.rows)
        pmap = sum(bool(r.get("dicom_pmap")) for r in self.rows)
        lines = (
            [f"DICOM outputs: {seg} SEG, {pmap} parametric map in volumes/"] if seg or pmap else []
        )
        notes: dict[str, list[str]] = {}
        for r in self.rows:
            if r.get("dicom_note"):
                notes.setdefault(r["dicom_note"], []).append(r["file"])
        for note, files in notes.items():
            who = files[0] if len(files) == 1 else f"{len(files)} inputs"
            lines.append(f"--dicom-out: {who}: {note}")
        return lines

    def summary_lines(self, per_row: bool = True, max_failures: int = 20) -> list[str]:
        """A line per input (`per_row`), else a line per failed input up to `max_failures`
        (then how many more are in predictions.json); then the totals."""
        lines = []
        failed = [r for r in self.rows if r["status"] != "ok"]
        for r in self.rows if per_row else failed[:max_failures]:
            if r["status"] == "ok":
                flag = " (outside the training domain)" if r.get("in_domain") is False else ""
                lines.append(f"{r['file']}: score {r['score']:.4f} -> {r['decision'] or '-'}{flag}")
            else:
                lines.append(f"{r['file']}: error: {r['error']}")
        if not per_row and len(failed) > max_failures:
            lines.append(f"{len(failed) - max_failures} more failed inputs in predictions.json")
        if self.excluded:
            counts = Counter(why for _, why in self.excluded)
            kinds = ", ".join(f"{why}: {n}" for why, n in counts.items())
            lines.append(
                f"left out {len(self.excluded)} files found in folders ({kinds}; e.g. "
                f"{display_path(self.excluded[0][0])}); listed in predictions.json"
            )
        lines += self.dicom_lines()
        ok = [r for r in self.rows if r["status"] == "ok"]
        n_abn = sum(r["decision"] == "abnormal" for r in ok)
        undecided = sum(r["decision"] is None for r in ok)
        lines.append(
            f"{len(ok)} of {len(self.rows)} inputs scored ({n_abn} abnormal"
            + (f", {undecided} without a threshold" if undecided else "")
            + f"), {self.n_failed} failed; predictions.csv, predictions.json and overlays/ "
            f"in {display_path(self.output_dir)}"
        )
        return lines + self.domain_lines()

    def domain_lines(self) -> list[str]:
        """The domain guard's count, when it flagged or could not judge anything."""
        counts = count_flags(self.rows)
        refused = sum(r["status"] == "error" and r.get("in_domain") is False for r in self.rows)
        out = counts["out_of_domain"] + refused
        if out:
            what = f"{refused} refused" if refused else "decisions still given, flagged"
            return [
                f"domain guard: {out} of {len(self.rows)} inputs are outside this detector's "
                f"training domain ({what}); see in_domain in predictions.csv"
            ]
        notes = {r.get("domain_note") for r in self.rows if r["status"] == "ok"}
        if counts["domain_unknown"] and any(n and "before the domain guard" in n for n in notes):
            return [f"domain guard: none in this checkpoint; {NO_GUARD_HINT}"]
        return []


def _is_mask_like(path: Path, root: Path) -> bool:
    parts = path.relative_to(root).parts[:-1]
    stem = path.name.split(".")[0]
    return any(p.lower() in MASK_FOLDERS for p in parts) or bool(MASK_NAME.search(stem))


def _hidden(path: Path, root: Path) -> bool:
    return any(p.startswith(".") for p in path.relative_to(root).parts)


def collect_inputs(
    inputs: Sequence[str | Path],
) -> tuple[list[Path], list[Path], list[tuple[str, str]], list[tuple[str, str]]]:
    """Expand inputs into (2D image files, volumes, problems, excluded).

    Folders are searched recursively: image files, NIfTI files and folders that directly hold
    DICOM files (one series each) are kept side by side; mask files (`masks/`, `*_mask.png`)
    and hidden files are left out and listed. A file named explicitly is always scored."""
    files: list[Path] = []
    volumes: list[Path] = []
    problems: list[tuple[str, str]] = []
    excluded: list[tuple[str, str]] = []
    for item in map(Path, inputs):
        if item.is_symlink() and not item.exists():
            problems.append((str(item), BROKEN_LINK))
        elif not item.exists():
            problems.append((str(item), "no such file or folder. Fix: check the path."))
        elif item.is_dir():
            _scan_folder(item, files, volumes, problems, excluded)
        elif is_volume_path(item):
            volumes.append(item)
        elif is_image_file(item):
            files.append(item)
        else:
            why = f"not an image file (extension {item.suffix or 'none'!r}). Fix: convert it to "
            problems.append((str(item), why + "PNG, JPEG, BMP, TIFF, NIfTI or DICOM"))
    return _unique(files), _unique(volumes), problems, excluded


def _scan_folder(root: Path, files, volumes, problems, excluded) -> None:
    found_images, found_volumes, others = [], [], []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() and not path.exists():
            problems.append((str(path), BROKEN_LINK))
            continue
        if path.is_dir():
            continue
        hidden = _hidden(path, root)
        if not path.is_file():  # never opened: reading a pipe would hang
            if not hidden:
                others.append((str(path), NOT_REGULAR))
        elif is_image_file(path):
            if hidden or _is_mask_like(path, root):
                excluded.append((str(path), MASK_OR_HIDDEN))
            else:
                found_images.append(path)
        elif not hidden and not is_volume_path(path):
            others.append((str(path), NOT_IMAGE))
    for vol in find_volumes(root):
        if vol != root and (_hidden(vol, root) or _is_mask_like(vol, root)):
            excluded.append((str(vol), MASK_OR_HIDDEN))
        else:
            found_volumes.append(vol)
    if not found_images and not found_volumes:
        problems.append(
            (
                str(root),
                "folder holds no PNG/JPEG/BMP/TIFF images, NIfTI files or DICOM series. Fix: "
                "point at the folder that holds them.",
            )
        )
    files += found_images
    volumes += found_volumes
    excluded += others


def _unique(paths: list[Path]) -> list[Path]:
    seen, out = set(), []
    for p in paths:
        key = os.path.abspath(p)
        if key not in seen:
            seen.add(key)
            out.append(p)
    return out


class _RowWriter:
    """Appends each row to predictions.csv and predictions.jsonl as soon as it exists."""

    def __init__(self, out: Path) -> None:
        self.csv_file = open(out / "predictions.csv", "w", newline="", encoding="utf-8")
        self.jsonl = open(out / "predictions.jsonl", "w", encoding="utf-8")
        self.writer = csv.DictWriter(self.csv_file, fieldnames=FIELDS, extrasaction="ignore")
        self.writer.writeheader()

    def write(self, row: dict) -> None:
        self.writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in FIELDS})
        self.jsonl.write(dumps_json(row).replace("\n", "") + "\n")
        self.csv_file.flush()
        self.jsonl.flush()

    def close(self) -> None:
        self.csv_file.close()
        self.jsonl.close()


def predict_run(
    checkpoint: str | Path,
    inputs: Sequence[str | Path],
    output_dir: str | Path,
    device: str = "auto",
    batch_size: int = 16,
    progress: bool = True,
    compile_backbone: bool = False,
    overwrite: bool = False,
    strict: bool = False,
    runtime: str = "torch",
    dicom_out: str | None = None,
    domain_check: DomainCheck = "warn",
) -> PredictReport:
    """Score every input; write overlays, per-volume maps and the prediction tables.

    `runtime` "onnx" / "openvino" scores with the exported model (`anomed export`) under
    onnxruntime / OpenVINO;
    `dicom_out` (seg, pmap, both) adds DICOM objects for DICOM series inputs (see
    anomed.export.dicom_out). `domain_check` (warn, refuse, off): what to do with an input
    outside the detector's training domain (anomed.engine.domain). Raises AnomedError before any
    work for a bad output folder or when nothing is scorable; with `strict`, after the run when
    any input failed (everything is still written)."""
    batch_size = coerce(Positive, batch_size, "--batch-size")  # 16.0 -> 16
    if batch_size > MAX_BATCH:
        raise AnomedError(
            f"--batch-size {batch_size}: must be between 1 and {MAX_BATCH} (a batch's images "
            "are held in memory together). Fix: pass e.g. --batch-size 16."
        )
    _check_options(runtime, dicom_out, compile_backbone)
    check_mode(domain_check)
    out = check_output_dir(output_dir, overwrite, inputs=list(inputs), protect=[checkpoint])
    files, volumes, problems, excluded = collect_inputs(inputs)
    if not files and not volumes:
        if not problems:
            raise AnomedError("no images to score: none given. Fix: pass image files or folders.")
        detail = "; ".join(f"{display_path(p)}: {why}" for p, why in problems)
        raise AnomedError(f"no images to score. {detail}")  # each problem says its own fix
    detector = _load(checkpoint, runtime, device, batch_size, compile_backbone)
    detector.domain_check = domain_check
    clear_dir(out)
    report = PredictReport(out, excluded=excluded)
    writer = _RowWriter(out)
    try:
        for path, why in problems:
            _add(report, writer, _error_row(path, why, detector))
        bar = tqdm(
            total=len(files) + len(volumes), desc="predict", unit="input", disable=not progress
        )
        for rows in _image_rows(detector, files, out):
            for row in rows:
                if dicom_out and row["status"] == "ok":
                    row["dicom_note"] = "not a DICOM series: no DICOM objects"
                _add(report, writer, row)
            bar.update(len(rows))
        for path in volumes:
            _add(report, writer, _volume_row(detector, path, out, dicom_out))
            bar.update(1)
        bar.close()
    finally:  # also after an interruption: the rows so far, marked incomplete
        writer.close()
        _write_summary(report, detector, len(problems) + len(files) + len(volumes))
    if strict and report.n_failed:
        raise AnomedError(
            f"{report.n_failed} of {len(report.rows)} inputs failed (--strict); see "
            f"{out / 'predictions.csv'}"
        )
    return report


def _check_options(runtime: str, dicom_out: str | None, compile_backbone: bool) -> None:
    if runtime not in RUNTIMES:
        raise AnomedError(f"--runtime {runtime}: use {', '.join(RUNTIMES)}")
    if runtime != "torch" and compile_backbone:
        raise AnomedError("--compile applies to the torch runtime only. Fix: drop --compile.")
    if dicom_out is not None and dicom_out not in ("seg", "pmap", "both"):
        raise AnomedError(f"--dicom-out {dicom_out}: use seg, pmap or both")


def _load(
    checkpoint: str | Path, runtime: str, device: str, batch_size: int, compile_backbone: bool
) -> Detector:
    """The torch Detector of a run, or the detector of its export (same interface)."""
    return load_runtime_detector(checkpoint, runtime, device, batch_size, compile_backbone)


def _add(report: PredictReport, writer: _RowWriter, row: dict) -> None:
    report.rows.append(row)
    writer.write(row)


def _error_row(
    path: str | Path, why: str, detector: Detector, pred: Prediction | None = None
) -> dict:
    return {
        "file": display_path(path),
        "status": "error",
        "score": None,
        "threshold": detector.threshold,
        "decision": None,
        "domain_distance": None if pred is None else pred.domain_distance,
        "in_domain": None if pred is None else pred.in_domain,
        "error": display_text(why),
        "overlay": None,
    }


def _domain_fields(pred: Prediction) -> dict:
    return {
        "domain_distance": pred.domain_distance,
        "in_domain": pred.in_domain,
        "domain_note": pred.domain_note,
    }


def _image_rows(detector: Detector, files: list[Path], out: Path) -> Iterator[list[dict]]:
    used: set[str] = set()
    for start in range(0, len(files), detector.batch_size):
        chunk = files[start : start + detector.batch_size]
        rows = []
        for path, pred in zip(chunk, detector.predict(chunk, keep_images=True), strict=True):
            rows.append(_image_row(detector, path, pred, out, used))
        yield rows


def _image_row(detector: Detector, path: Path, pred: Prediction, out: Path, used: set) -> dict:
    if not pred.ok:
        return _error_row(path, pred.error or "failed", detector, pred)
    name = _overlay_name(path, used)
    try:
        save_prediction_png(
            out / "overlays" / name,
            pred.image,
            pred.anomaly_map,
            score=pred.score,
            decision=pred.decision,
            threshold=pred.threshold,
            limits=detector.map_range,
            note=pred.domain_note if pred.in_domain is False else None,
        )
        overlay = f"overlays/{name}"
    except (OSError, ValueError) as exc:  # the score stands; say why the picture is missing
        overlay = None
        pred.error = f"overlay not written: {exc}"
    return {
        "file": display_path(path),
        "status": "ok",
        "score": pred.score,
        "threshold": pred.threshold,
        "decision": pred.decision,
        **_domain_fields(pred),
        "error": None if pred.error is None else display_text(pred.error),
        "overlay": overlay,
    }


def _volume_row(detector: Detector, path: Path, out: Path, dicom_out: str | None) -> dict:
    from anomed.engine.volumes import predict_volume

    try:
        vol = predict_volume(detector, path, out / "volumes")
    except AnomedError as exc:
        return _error_row(path, str(exc), detector)
    flag, note = detector.judge(vol.domain_distance)
    judged = Prediction(str(path), domain_distance=vol.domain_distance, in_domain=flag)
    judged.domain_note = note
    if flag is False and detector.domain_check == "refuse":
        why = refuse_message(display_path(path), vol.domain_distance, detector.domain_threshold)
        return _error_row(path, why, detector, judged)
    row = {
        "file": display_path(path),
        "status": "ok",
        "score": vol.score,
        "threshold": detector.threshold,
        "decision": vol.decision,
        **_domain_fields(judged),
        "error": None,
        "overlay": str(vol.map_path.relative_to(out)),
        "slices": str(vol.csv_path.relative_to(out)),
    }
    if dicom_out:
        from anomed.export.dicom_out import dicom_row_fields

        row.update(dicom_row_fields(detector, path, vol.map_path, out, dicom_out))
    return row


_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _overlay_name(path: Path, used: set[str]) -> str:
    """A safe, unique overlay file name from the input's stem."""
    stem = _SAFE.sub("_", display_path(path.name).rsplit(".", 1)[0])[:80] or "image"
    name, n = f"{stem}_overlay.png", 1
    while name in used:
        name, n = f"{stem}_{n}_overlay.png", n + 1
    used.add(name)
    return name


def _write_summary(report: PredictReport, detector: Detector, n_given: int) -> None:
    info = detector.info
    payload = {
        "run": display_path(detector.run_dir) if detector.run_dir else None,
        "runtime": getattr(detector, "runtime", "torch"),
        "method": info.run.method,
        "preset": info.run.preset,
        "threshold": detector.threshold,
        "n_inputs": len(report.rows),
        "complete": len(report.rows) == n_given,  # False: the run was cut short
        "n_failed": report.n_failed,
        "domain_check": getattr(detector, "domain_check", "off"),
        "domain_threshold": getattr(detector, "domain_threshold", None),
        **count_flags(report.rows),
        "predictions": report.rows,
        "excluded": [{"file": display_path(f), "reason": r} for f, r in report.excluded],
    }
    write_json(report.output_dir / "predictions.json", payload)


def read_predictions(output_dir: str | Path) -> list[dict]:
    """The rows a predict run wrote (from the streamed JSON lines).

    A run killed mid-write can leave a torn last line; that row was never finished, so it is
    dropped. A torn line anywhere else means the file was edited or damaged: that is an error.
    """
    path = Path(output_dir) / "predictions.jsonl"
    lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as err:
            if i == len(lines) - 1:
                break
            msg = f"{path}: line {i + 1} is not JSON ({err.msg}); the file is damaged"
            raise AnomedError(msg) from None
    return rows
