"""End to end against a real Orthanc: phantom series in, `pacs watch --once`, and the SEG,
Parametric Map and SR read back over DICOMweb equal `anomed predict --dicom-out both` on the
same files (scores and decisions exactly, maps voxel by voxel)."""

from __future__ import annotations

import json

import numpy as np
import pydicom
from dicomweb_client.api import DICOMwebClient
from pacskit import make_watcher

from anomed.cli import main
from anomed.pacs.ledger import Ledger
from anomed.pacs.sr import RESEARCH, read_sr_results

SEG_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
PM_CLASS = "1.2.840.10008.5.1.4.1.1.30"


def _results(server, study_uid: str) -> dict[str, list[pydicom.Dataset]]:
    """The anomed objects of a study, by kind, retrieved over WADO-RS."""
    web = DICOMwebClient(server.dicomweb)
    found = {"seg": [], "pmap": [], "sr": []}
    for s in server.series_of(study_uid):
        if s.get("Manufacturer") != "anomed":
            continue
        for ds in web.retrieve_series(study_uid, s["SeriesInstanceUID"]):
            kind = {SEG_CLASS: "seg", PM_CLASS: "pmap"}.get(ds.SOPClassUID, "sr")
            found[kind].append(ds)
    return found


def _predict(checkpoint, sources, tmp_path) -> dict:
    """`anomed predict --dicom-out both` on the same files: row per input."""
    mr_dir = sources["mr"][0].parent
    inputs = [str(mr_dir)] + [str(p) for k in ("cr", "dx") for p in sources[k]]
    out = tmp_path / "predict"
    code = main(["-q", "predict", str(checkpoint), *inputs, "-o", str(out), "--dicom-out", "both"])
    assert code == 0
    rows = json.loads((out / "predictions.json").read_text())["predictions"]
    return {r["file"]: {**r, "out": out} for r in rows}


def test_watch_once_sends_seg_pmap_and_sr_equal_to_predict(
    detector, checkpoint, orthanc, sources, tmp_path
):
    orthanc.upload(sources["mr"] + sources["cr"] + sources["dx"])
    watcher = make_watcher(detector, orthanc, tmp_path / "data")
    summary = watcher.run()[0]
    assert len(summary.sent) == 3 and not summary.failed and summary.unavailable is None
    want = _predict(checkpoint, sources, tmp_path)

    # the MR volume: one SEG, one PM, one SR in its study, on its instances
    mr = [pydicom.dcmread(p) for p in sources["mr"]]
    got = _results(orthanc, mr[0].StudyInstanceUID)
    assert [len(got[k]) for k in ("seg", "pmap", "sr")] == [1, 1, 1]
    row = want[str(sources["mr"][0].parent)]
    for kind in ("seg", "pmap"):
        sent = got[kind][0]
        assert sent.ReferencedSeriesSequence[0].SeriesInstanceUID == mr[0].SeriesInstanceUID
        local = pydicom.dcmread(row["out"] / row[f"dicom_{kind}"])
        assert _frames_by_source(sent) == _frames_by_source(local)  # exact, per source
    [sr] = got["sr"]
    assert RESEARCH in sr.SeriesDescription
    [group] = read_sr_results(sr)
    assert sorted(group["sources"]) == sorted(ds.SOPInstanceUID for ds in mr)
    assert (group["score"], group["decision"]) == (row["score"], row["decision"])

    # the radiographs: a SEG per film (no PM: no plane geometry), one SR per series
    for key in ("cr", "dx"):
        films = [pydicom.dcmread(p) for p in sources[key]]
        got = _results(orthanc, films[0].StudyInstanceUID)
        assert (len(got["seg"]), len(got["pmap"]), len(got["sr"])) == (len(films), 0, 1)
        groups = {g["sources"][0]: g for g in read_sr_results(got["sr"][0])}
        segs = {s.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0]
                .ReferencedSOPInstanceUID: s for s in got["seg"]}  # fmt: skip
        for path, film in zip(sources[key], films, strict=True):
            row = want[str(path)]
            g = groups[film.SOPInstanceUID]
            assert (g["score"], g["decision"]) == (row["score"], row["decision"])
            local = pydicom.dcmread(row["out"] / row["dicom_seg"])
            np.testing.assert_array_equal(segs[film.SOPInstanceUID].pixel_array, local.pixel_array)

    ledger = Ledger(tmp_path / "data")
    assert {r["state"] for r in ledger.all()} == {"sent"}
    assert all(o["stored"] for o in ledger.outputs())
    ledger.close()
    watcher.close()


def _frames_by_source(ds: pydicom.Dataset) -> dict[str, list]:
    """Frame values keyed by the source instance each frame lies on."""
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    out = {}
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        out[uid] = frame.ravel().tolist()
    return out
