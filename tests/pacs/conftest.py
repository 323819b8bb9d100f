"""Fixtures for the PACS tests: phantom DICOM series (an MR volume, CR and DX radiographs, a
corrupt series), a warm detector of the shared tiny run, and a real Orthanc per test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from orthanckit import Orthanc

from anomed.data.phantoms.chest import make_abnormal_chest_film, write_dicom_radiograph
from anomed.data.phantoms.heads import VolumePhantomConfig, write_phantom_volumes
from anomed.engine.detector import load_detector

SHAPE = (24, 20, 16)  # small phantom head: quick to score, no two sides alike


@pytest.fixture(scope="session")
def sources(tmp_path_factory) -> dict[str, list[Path]]:
    """name -> DICOM files: "mr" (one 12-slice series), "cr" (two films, one series), "dx"
    (one film) and "corrupt" (an MR series whose pixel data is cut short)."""
    root = tmp_path_factory.mktemp("pacs_sources")
    cases = write_phantom_volumes(root / "heads", VolumePhantomConfig(n_cases=1, shape=SHAPE))
    mr = sorted(next(c.dicom for c in cases if c.dicom).glob("*.dcm"))
    rng = np.random.default_rng(5)
    films = [make_abnormal_chest_film(rng, 64, "nodule")[0] for _ in range(3)]
    cr = [write_dicom_radiograph(root / "cr" / f"{k}.dcm", films[k], f"cr1/{k}") for k in (0, 1)]
    dx = [write_dicom_radiograph(root / "dx" / "0.dcm", films[2], "dx1/0", modality="DX")]
    return {"mr": mr, "cr": cr, "dx": dx, "corrupt": corrupt_series(root / "corrupt", mr)}


def corrupt_series(folder: Path, mr: list[Path]) -> list[Path]:
    """A copy of the MR series with new UIDs (its own study) and pixel data cut in half."""
    import pydicom
    from pydicom.uid import generate_uid

    folder.mkdir(parents=True)
    study, series = generate_uid(), generate_uid()
    out = []
    for k, path in enumerate(mr[:4]):
        ds = pydicom.dcmread(path)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
        out.append(folder / f"{k}.dcm")
        ds.save_as(out[-1], enforce_file_format=True)
    return out


@pytest.fixture(scope="session")
def detector(checkpoint):
    return load_detector(checkpoint, "cpu", batch_size=8)


@pytest.fixture
def orthanc(tmp_path):
    server = Orthanc(tmp_path / "orthanc").start()
    yield server
    server.stop()
