"""DICOM SEG and Parametric Map on the source series: read back with pydicom and highdicom,
placed by their own geometry and compared with the NIfTI map at the same patient positions."""

import json
import shutil

import highdicom as hd
import numpy as np
import pydicom
import pytest

from anomed.cli import main
from anomed.data.phantoms.heads import (
    VolumePhantomConfig,
    phantom_affine,
    write_dicom_series,
    write_phantom_volumes,
)
from anomed.data.volumes import read_nifti, read_volume, write_nifti
from anomed.errors import AnomedError
from anomed.export.dicom_out import write_dicom_outputs

SHAPE = (24, 20, 16)  # phantom heads: small, and no two sides alike (a swapped axis shows)
LPS = np.diag([-1.0, -1.0, 1.0])


@pytest.fixture(scope="module")
def heads(tmp_path_factory):
    return write_phantom_volumes(
        tmp_path_factory.mktemp("heads") / "h", VolumePhantomConfig(n_cases=2, shape=SHAPE)
    )


def _series(cases):
    return next(c.dicom for c in cases if c.dicom is not None)


def _coded_map(series, out):
    """A NIfTI map of `series` whose every canonical voxel holds its own index code."""
    volume = read_volume(series)
    i, j, k = np.indices(volume.data.shape)
    coded = (i + 100 * j + 10000 * k).astype(np.float32)
    return write_nifti(out / "x_anomaly.nii.gz", coded, volume), coded


def _sources(series):
    return {ds.SOPInstanceUID: ds for ds in map(pydicom.dcmread, sorted(series.iterdir()))}


def _canonical_lookup(nifti, ras):
    """Values of the NIfTI map (read as every volume: canonical RAS+) at RAS points (..., 3)."""
    canon = read_nifti(nifti)
    vox = ras @ np.linalg.inv(canon.affine)[:3, :3].T + np.linalg.inv(canon.affine)[:3, 3]
    idx = np.rint(vox).astype(int)
    assert np.abs(vox - idx).max() < 1e-3  # every output pixel sits on a map voxel centre
    return canon.data[idx[..., 0], idx[..., 1], idx[..., 2]]


def _check_frames(path, series, nifti):
    """Per frame (pydicom): the referenced source instance, its geometry, and the values."""
    ds, sources = pydicom.dcmread(path), _sources(series)
    first = next(iter(sources.values()))
    for key in ("StudyInstanceUID", "FrameOfReferenceUID", "PatientID"):
        assert ds[key].value == first[key].value, key
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    shared = ds.SharedFunctionalGroupsSequence[0]
    iop = np.array(shared.PlaneOrientationSequence[0].ImageOrientationPatient, float)
    spacing = np.array(shared.PixelMeasuresSequence[0].PixelSpacing, float)
    frames, seen, pairs = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns), set(), []
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        src, ipp = sources[uid], np.array(group.PlanePositionSequence[0].ImagePositionPatient)
        assert np.allclose(ipp, np.array(src.ImagePositionPatient, float), atol=1e-4)
        assert np.allclose(iop, np.array(src.ImageOrientationPatient, float), atol=1e-6)
        assert np.allclose(spacing, np.array(src.PixelSpacing, float))
        assert (ds.Rows, ds.Columns) == (src.Rows, src.Columns)
        r, c = np.indices(frame.shape)
        lps = ipp + c[..., None] * spacing[1] * iop[:3] + r[..., None] * spacing[0] * iop[3:]
        pairs.append((frame, _canonical_lookup(nifti, lps @ LPS.T)))
        seen.add(uid)
    assert seen == set(sources)  # one frame per source instance
    return pairs


def _check_volume(volume, nifti):
    """highdicom's own reconstruction: each voxel at its affine's position matches the map."""
    idx = np.stack(np.indices(volume.array.shape[:3]), -1).astype(float)
    lps = idx @ volume.affine[:3, :3].T + volume.affine[:3, 3]
    return volume.array.reshape(volume.array.shape[:3]), _canonical_lookup(nifti, lps @ LPS.T)


def _check_both(out, series, nifti, threshold):
    for frame, want in _check_frames(out.pmap, series, nifti):
        np.testing.assert_array_equal(frame, want)
    for frame, want in _check_frames(out.seg, series, nifti):
        np.testing.assert_array_equal(frame.astype(bool), want > threshold)
    pmap = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(out.pmap))
    got, want = _check_volume(pmap.get_volume(), nifti)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)
    seg = hd.seg.segread(out.seg)
    got, want = _check_volume(seg.get_volume(combine_segments=True), nifti)
    np.testing.assert_array_equal(got.astype(bool), want > threshold)
    assert len(seg.get_source_image_uids()) == len(list(series.iterdir()))
    (segment,) = seg.SegmentSequence
    assert segment.SegmentLabel == "anomaly" and segment.SegmentAlgorithmType == "AUTOMATIC"


def test_seg_and_pmap_lie_on_the_phantom_series(heads, tmp_path):
    series = _series(heads)
    nifti, coded = _coded_map(series, tmp_path)
    threshold = float(np.median(coded))
    out = write_dicom_outputs(series, nifti, "both", threshold, "mediclip", (0.0, 1.0))
    assert out.seg.name == "x_seg.dcm" and out.pmap.name == "x_pmap.dcm" and out.note is None
    _check_both(out, series, nifti, threshold)


def test_an_oblique_shuffled_series_maps_voxel_for_voxel(heads, tmp_path):
    """Rotated in three axes, so every stored axis differs from the canonical one; files named
    against the slice order."""
    a, b = np.deg2rad(100), np.deg2rad(15)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = phantom_affine(SHAPE, (1.0, 1.25, 2.0))
    affine[:3, :3] = rx @ rz @ affine[:3, :3]
    data = read_volume(heads[0].sequences["t1"]).data
    series = tmp_path / "oblique"
    for k, path in enumerate(write_dicom_series(series, data, affine, "oblique")):
        path.rename(series / f"S{len(data[0, 0]) - k:03d}.dcm")
    nifti, _ = _coded_map(series, tmp_path)
    out = write_dicom_outputs(series, nifti, "both", 5000.0, "mvfa")
    _check_both(out, series, nifti, 5000.0)


def test_a_map_from_another_grid_is_refused(heads, tmp_path):
    series = _series(heads)
    other = write_nifti(
        tmp_path / "y_anomaly.nii.gz",
        np.zeros(SHAPE, np.float32),
        read_volume(heads[1].sequences["t1"]),
    )
    shifted = tmp_path / "shifted"
    shutil.copytree(series, shifted)
    for path in shifted.iterdir():
        ds = pydicom.dcmread(path)
        ds.ImagePositionPatient = [float(v) + 0.4 for v in ds.ImagePositionPatient]
        ds.save_as(path)
    with pytest.raises(AnomedError, match="does not lie on the map's grid"):
        write_dicom_outputs(shifted, other, "pmap", None, "mediclip")
    out = write_dicom_outputs(series, other, "both", None, "mediclip")
    assert out.seg is None and out.pmap is not None and "no calibrated threshold" in out.note
    out = write_dicom_outputs(series, other, "seg", -0.5, "mvfa")  # unscored slices hold 0
    assert out.seg is None and out.pmap is None and "is below 0" in out.note


@pytest.mark.slow
def test_predict_dicom_out_writes_seg_and_pmap_for_the_dicom_series(
    heads, run_factory, tmp_path, capsys
):
    run, series, nifti_case = run_factory("mediclip"), _series(heads), heads[1].sequences["t1"]
    argv = ["-q", "predict", str(run), str(series), str(nifti_case), "-o", str(tmp_path / "p")]
    assert main([*argv, "--dicom-out", "both"]) == 0
    printed = capsys.readouterr().out
    assert "DICOM outputs: 1 SEG, 1 parametric map" in printed
    assert "t1.nii.gz: not a DICOM series: no DICOM objects" in printed
    report = json.loads((tmp_path / "p" / "predictions.json").read_text())
    dicom_row = next(r for r in report["predictions"] if r["file"] == str(series))
    assert dicom_row["status"] == "ok" and dicom_row["error"] is None
    out = type("Out", (), {k: tmp_path / "p" / dicom_row[f"dicom_{k}"] for k in ("seg", "pmap")})
    nifti = tmp_path / "p" / dicom_row["overlay"]
    _check_both(out, series, nifti, report["threshold"])
    values = pydicom.dcmread(out.pmap).pixel_array
    assert values.max() > values.min()  # a real map, not a constant


def test_a_lone_radiograph_gets_a_seg_on_its_pixels_and_no_pmap(tmp_path):
    """A CR film has no plane geometry: read_volume places it axially at the origin, and the
    SEG's single frame is the map's values at the film's own pixels (no PM: highdicom needs
    plane positions for one)."""
    from anomed.data.phantoms.chest import make_chest_film, write_dicom_radiograph

    film = make_chest_film(np.random.default_rng(1), 48)[0]
    path = write_dicom_radiograph(tmp_path / "cr.dcm", film[:, :40], "t/0", spacing_mm=0.3)
    volume = read_volume(path)
    assert volume.data.shape == (40, 48, 1)  # (columns, rows, 1), canonical RAS
    i, j, _ = np.indices(volume.data.shape)
    coded = (i + 100 * j).astype(np.float32)
    nifti = write_nifti(tmp_path / "cr_anomaly.nii.gz", coded, volume)
    out = write_dicom_outputs(path, nifti, "both", 2000.0, "mediclip")
    assert out.pmap is None and "no DICOM parametric map" in out.note
    seg = pydicom.dcmread(out.seg)
    assert seg.NumberOfFrames == 1 and (seg.Rows, seg.Columns) == (48, 40)
    rows, cols = np.indices((48, 40))
    want = read_nifti(nifti).data[..., 0]  # RAS: x runs against the columns, y against rows
    expected = want[39 - cols, 47 - rows] > 2000.0
    np.testing.assert_array_equal(seg.pixel_array.astype(bool), expected)
