"""Volume I/O: NIfTI and DICOM reading, canonical orientation, views, windowing, map writing."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest
from nibabel import orientations as ornt
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from anomed.data.dicom import read_dicom_series
from anomed.data.phantoms.heads import phantom_affine, write_dicom_series
from anomed.data.volumes import (
    VIEWS,
    find_volumes,
    is_volume_path,
    nonempty_slices,
    normalize_volume,
    read_mask_volume,
    read_nifti,
    read_volume,
    slice_volume,
    stack_slices,
    window,
    write_nifti,
)
from anomed.errors import AnomedError

SHAPE = (6, 7, 5)  # (X, Y, Z), all different so a wrong axis order cannot pass
RAS = np.diag([2.0, 1.0, 3.0, 1.0])


def _canonical_data(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 100, SHAPE).astype(np.float32)


def _stored(data: np.ndarray, affine: np.ndarray, axcodes: str) -> nib.Nifti1Image:
    """The canonical image re-stored with axis order/directions `axcodes` (nibabel's own
    reorientation, independent of the code under test)."""
    img = nib.Nifti1Image(data, affine)
    return img.as_reoriented(
        ornt.ornt_transform(ornt.axcodes2ornt("RAS"), ornt.axcodes2ornt(axcodes))
    )


def _marker_volume() -> np.ndarray:
    """Zeros with one voxel set in the patient's left-anterior-superior corner."""
    data = np.zeros(SHAPE, np.float32)
    data[0, -1, -1] = 1  # axis 0 -> Right, so index 0 is the far left
    return data


def _assert_marker_views(data: np.ndarray) -> None:
    """Where the left-anterior-superior marker must appear in the radiological convention."""
    axial, sagittal, coronal = (slice_volume(data, v) for v in ("axial", "sagittal", "coronal"))
    # axial: last (most superior) slice, anterior at the top, patient left on image right
    assert np.argwhere(axial > 0.5).tolist() == [[SHAPE[2] - 1, 0, SHAPE[0] - 1]]
    # sagittal: first (most left) slice, superior at the top, anterior on image left
    assert np.argwhere(sagittal > 0.5).tolist() == [[0, 0, 0]]
    # coronal: last (most anterior) slice, superior at the top, patient left on image right
    assert np.argwhere(coronal > 0.5).tolist() == [[SHAPE[1] - 1, 0, SHAPE[0] - 1]]


# ----------------------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("axcodes", ["RAS", "LPS", "ALI", "SRP"])
def test_read_nifti_reorients_any_storage_to_ras(tmp_path, axcodes):
    data = _canonical_data()
    path = tmp_path / "scan.nii.gz"
    nib.save(_stored(data, RAS, axcodes), path)
    vol = read_nifti(path)
    assert vol.data.dtype == np.float32 and vol.kind == "nifti"
    assert np.array_equal(vol.data, data)
    assert np.allclose(vol.affine, RAS)
    assert vol.spacing == (2.0, 1.0, 3.0)
    assert nib.aff2axcodes(vol.source_affine) == tuple(axcodes)


@pytest.mark.parametrize("axcodes", ["LPS", "ALI"])
def test_write_nifti_restores_the_original_orientation(tmp_path, axcodes):
    stored = _stored(_canonical_data(), RAS, axcodes)
    nib.save(stored, tmp_path / "scan.nii.gz")
    vol = read_nifti(tmp_path / "scan.nii.gz")
    out = write_nifti(tmp_path / "maps" / "map.nii.gz", vol.data, vol)
    raw = nib.load(out)
    assert raw.shape == stored.shape
    assert np.allclose(raw.affine, stored.affine)
    assert np.array_equal(raw.get_fdata(dtype=np.float32), stored.get_fdata(dtype=np.float32))
    assert raw.get_data_dtype() == np.float32
    mask = write_nifti(tmp_path / "mask.nii", vol.data > 50, vol)
    assert nib.load(mask).get_data_dtype() == np.uint8
    assert not list(tmp_path.rglob(".partial-*"))


def test_singleton_4th_dimension_reads_and_writes_back(tmp_path):
    data = _canonical_data()[..., None]
    nib.save(nib.Nifti1Image(data, RAS), tmp_path / "one.nii.gz")
    vol = read_nifti(tmp_path / "one.nii.gz")
    assert vol.data.shape == SHAPE
    write_nifti(tmp_path / "map.nii.gz", vol.data, vol)
    assert nib.load(tmp_path / "map.nii.gz").shape == (*SHAPE, 1)


def test_4d_nifti_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "fmri.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((*SHAPE, 3), np.float32), RAS), path)
    with pytest.raises(AnomedError, match=r"fmri\.nii\.gz.*4D.*3 volumes.*Fix.*fslroi"):
        read_nifti(path)


def test_truncated_and_bogus_nifti_give_one_clear_error(tmp_path):
    data = np.random.default_rng(0).random((20, 20, 20)).astype(np.float32)
    nib.save(nib.Nifti1Image(data, RAS), tmp_path / "full.nii.gz")
    raw = (tmp_path / "full.nii.gz").read_bytes()
    for name, content in [("cut.nii.gz", raw[: len(raw) // 2]), ("text.nii", b"hello")]:
        (tmp_path / name).write_bytes(content)
        with pytest.raises(AnomedError, match=rf"{name}.*truncated, corrupt.*Fix") as info:
            read_volume(tmp_path / name)
        assert "\n" not in str(info.value)
    with pytest.raises(AnomedError, match="no such file"):
        read_volume(tmp_path / "missing.nii.gz")


# ----------------------------------------------------------------------------- DICOM


def _series(folder, data=None, **kw):
    """A DICOM series of canonical `data` with RAS affine diag(1, 1, 1.5)."""
    data = _canonical_data() if data is None else data
    affine = phantom_affine(data.shape, (1.0, 1.0, 1.5))
    return write_dicom_series(folder, data, affine, **kw), data, affine


def _rewrite(path, **changes):
    ds = pydicom.dcmread(path)
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    ds.save_as(path, enforce_file_format=True)


def test_dicom_series_is_sorted_by_position_not_file_name_or_instance(tmp_path):
    files, data, affine = _series(tmp_path / "src", rescale=(0.5, -10.0))
    order = np.random.default_rng(1).permutation(len(files))
    folder = tmp_path / "series"
    folder.mkdir()
    for new, old in enumerate(order):  # file names and InstanceNumbers both scrambled
        files[old].rename(folder / f"slice_{new:02d}.dcm")
        _rewrite(folder / f"slice_{new:02d}.dcm", InstanceNumber=int(new) + 1)
    vol = read_dicom_series(folder)
    assert vol.kind == "dicom" and vol.modality == "MR"
    assert np.abs(vol.data - data).max() <= 0.25 + 1e-4  # half a rescale step
    assert np.allclose(vol.affine, affine)


def test_instance_number_orders_slices_without_positions(tmp_path):
    files, data, _ = _series(tmp_path / "s", rescale=(1.0, 0.0), data=np.round(_canonical_data()))
    for f in files:
        _rewrite(f, ImagePositionPatient=None)
    files[0].rename(files[0].with_name("ZZZ.dcm"))  # first slice sorts last by name
    assert np.array_equal(read_dicom_series(tmp_path / "s").data, np.round(_canonical_data()))


def test_rescale_and_geometry_follow_the_header(tmp_path):
    files, data, _ = _series(
        tmp_path / "ct", data=_canonical_data() * 20 - 1000, rescale=(2, -1024)
    )
    vol = read_dicom_series(tmp_path / "ct")
    assert np.abs(vol.data - data).max() <= 1.0 + 1e-3
    ds = pydicom.dcmread(files[3])  # any slice: its first pixel sits at ImagePositionPatient
    lps = np.array(ds.ImagePositionPatient, float)
    ijk = np.linalg.inv(vol.affine) @ np.array([-lps[0], -lps[1], lps[2], 1.0])  # LPS -> RAS
    i, j, k = np.round(ijk[:3]).astype(int)
    assert np.allclose(ijk[:3], (i, j, k), atol=1e-6)
    assert vol.data[i, j, k] == ds.pixel_array[0, 0] * 2.0 - 1024.0


def _multiframe(frames: list, per_frame_positions: bool) -> pydicom.Dataset:
    """One multi-frame dataset from single-frame ones (enhanced-style positions or legacy)."""
    ds = frames[0]
    ds.NumberOfFrames = len(frames)
    ds.PixelData = b"".join(f.PixelData for f in frames)
    if per_frame_positions:
        items = []
        for f in frames:
            pos, item = Dataset(), Dataset()
            pos.ImagePositionPatient = f.ImagePositionPatient
            item.PlanePositionSequence = Sequence([pos])
            items.append(item)
        ds.PerFrameFunctionalGroupsSequence = Sequence(items)
    return ds


def test_single_file_and_multiframe_files(tmp_path):
    files, data, affine = _series(
        tmp_path / "s", rescale=(1.0, 0.0), data=np.round(_canonical_data())
    )
    single = read_volume(files[2])
    assert single.data.shape == (SHAPE[0], SHAPE[1], 1)
    assert np.array_equal(single.data[..., 0], data[..., 2])
    # enhanced style: a position per frame, frames stored superior -> inferior
    frames = [pydicom.dcmread(f) for f in files][::-1]
    _multiframe(frames, True).save_as(tmp_path / "multi.dcm", enforce_file_format=True)
    assert np.array_equal(read_volume(tmp_path / "multi.dcm").data, data)
    # legacy: one position (the first frame's), frames a slice thickness apart
    frames = [pydicom.dcmread(f) for f in files]
    _multiframe(frames, False).save_as(tmp_path / "legacy.dcm", enforce_file_format=True)
    vol = read_volume(tmp_path / "legacy.dcm")
    assert np.array_equal(vol.data, data) and np.allclose(vol.affine, affine)


def test_window_from_header_and_from_percentiles(tmp_path):
    assert np.allclose(window(np.array([-10.0, 0, 50, 100, 200]), 50, 100), [0, 0, 0.5, 1, 1])
    ramp = np.arange(1000, dtype=np.float32)
    ramp[0], ramp[-1] = -1e6, 1e6  # outliers do not squash the range
    out = window(ramp, percentiles=(1, 99))
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    assert abs(out[500] - 0.5) < 0.01
    assert not window(np.full((3, 3), 7.0)).any()  # constant -> zeros, no division by zero
    _series(tmp_path / "s", window=(40.0, 60.0))
    vol = read_dicom_series(tmp_path / "s")
    assert vol.window == (40.0, 60.0)
    assert np.array_equal(normalize_volume(vol).data, window(vol.data, 40.0, 60.0))
    by_percentile = normalize_volume(vol, use_header=False).data
    assert np.array_equal(by_percentile, window(vol.data))
    assert by_percentile.min() == 0 and by_percentile.max() == 1


def test_monochrome1_reads_as_the_inverse_of_the_same_monochrome2_data(tmp_path):
    data = np.round(_canonical_data()) + 20  # stored 20..120 with rescale (1, 0)
    _series(tmp_path / "m2", data=data, rescale=(1.0, 0.0), window=(60.0, 50.0))
    files, _, _ = _series(tmp_path / "m1", data=data, rescale=(1.0, 0.0), window=(60.0, 50.0))
    for f in files:
        _rewrite(f, PhotometricInterpretation="MONOCHROME1")
    mono2, mono1 = read_dicom_series(tmp_path / "m2"), read_dicom_series(tmp_path / "m1")
    pivot = data.min() + data.max()  # v -> min + max - v over the volume's values
    assert np.array_equal(mono2.data, data)
    assert np.array_equal(mono1.data, pivot - data)
    assert mono1.window == (pivot - 60.0, 50.0)  # the header window follows the values
    # the header window still selects the same range: windowing then inverting, as viewers do
    assert np.allclose(normalize_volume(mono1).data, 1 - normalize_volume(mono2).data)
    by_percentile = normalize_volume(mono1, use_header=False).data
    assert np.allclose(by_percentile, 1 - normalize_volume(mono2, use_header=False).data)
    # a single 2D file (a CR/DX film) goes through the same reader
    single = read_volume(files[2]).data[..., 0]
    assert np.array_equal(single, data[..., 2].min() + data[..., 2].max() - data[..., 2])


def _modality_lut(first: int, table: np.ndarray) -> Sequence:
    """A Modality LUT Sequence item mapping stored value `first + i` to `table[i]` (OW data)."""
    item = Dataset()
    item.add_new("LUTDescriptor", "US", [len(table), first, 16])
    item.add_new("LUTData", "OW", np.asarray(table, "<u2").tobytes())
    item.ModalityLUTType = "US"
    return Sequence([item])


def test_modality_lut_sequence_is_applied(tmp_path):
    data = np.round(_canonical_data())  # stored 0..100 with rescale (1, 0)
    files, _, _ = _series(tmp_path / "lut", data=data, rescale=(1.0, 0.0))
    table = (np.arange(80) ** 2 // 4 + 7).astype(np.uint16)  # nonlinear, for values 10..89
    for f in files:
        _rewrite(f, ModalityLUTSequence=_modality_lut(10, table), RescaleSlope=None)
        _rewrite(f, RescaleIntercept=None)
    vol = read_dicom_series(tmp_path / "lut")
    # below the first mapped value -> first entry, above the last -> last entry
    expected = table[np.clip(data.astype(int) - 10, 0, len(table) - 1)]
    assert np.array_equal(vol.data, expected.astype(np.float32))
    _rewrite(files[0], ModalityLUTSequence=Sequence([Dataset()]))  # no descriptor, no data
    with pytest.raises(AnomedError, match=rf"{files[0].name}: invalid Modality LUT Sequence"):
        read_dicom_series(tmp_path / "lut")


def test_folder_with_two_series_lists_them(tmp_path):
    _series(tmp_path / "mixed", uid_seed="a", description="T1 axial")
    files, _, _ = _series(tmp_path / "other", uid_seed="b", description="FLAIR axial")
    for f in files:
        f.rename(tmp_path / "mixed" / f"flair_{f.name}")
    with pytest.raises(
        AnomedError, match=r"mixed: holds 2 series.*T1 axial.*FLAIR axial.*series_uid="
    ):
        read_volume(tmp_path / "mixed")
    uid = str(
        pydicom.dcmread(
            files[0].parent.parent / "mixed" / f"flair_{files[0].name}"
        ).SeriesInstanceUID
    )
    assert read_volume(tmp_path / "mixed", series_uid=uid).series_uid == uid


def test_dicom_without_pixel_data_is_named(tmp_path):
    files, _, _ = _series(tmp_path / "s")
    _rewrite(files[2], PixelData=None)
    with pytest.raises(AnomedError, match=rf"{files[2].name}: DICOM file has no pixel data"):
        read_dicom_series(tmp_path / "s")


def test_truncated_dicom_is_named(tmp_path):
    files, _, _ = _series(tmp_path / "s")
    with open(files[1], "r+b") as f:
        f.truncate(files[1].stat().st_size - 20)  # cut into the pixel data
    with pytest.raises(AnomedError, match=rf"{files[1].name}: .*Fix: the file is truncated"):
        read_dicom_series(tmp_path / "s")


def test_non_dicom_files_are_ignored_or_reported(tmp_path):
    _series(tmp_path / "s")
    (tmp_path / "s" / "README.txt").write_text("notes")
    (tmp_path / "s" / "notes").write_bytes(b"\x00" * 200)
    assert read_dicom_series(tmp_path / "s").data.shape == SHAPE
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(AnomedError, match="empty: no DICOM files found"):
        read_dicom_series(tmp_path / "empty")


def test_dispatch_and_volume_detection(tmp_path):
    _series(tmp_path / "dcm")
    nib.save(nib.Nifti1Image(_canonical_data(), RAS), tmp_path / "a.NII.GZ")
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "x.png").write_bytes(b"\x89PNG")
    assert is_volume_path(tmp_path / "a.NII.GZ") and is_volume_path(tmp_path / "dcm")
    assert not is_volume_path(tmp_path / "pngs") and not is_volume_path(tmp_path / "pngs/x.png")
    assert find_volumes(tmp_path) == [tmp_path / "a.NII.GZ", tmp_path / "dcm"]
    assert read_volume(tmp_path / "dcm").kind == "dicom"
    with pytest.raises(AnomedError, match=r"x\.png: not a volume"):
        read_volume(tmp_path / "pngs" / "x.png")


def test_mask_volume_must_match_the_scan(tmp_path):
    nib.save(nib.Nifti1Image(_canonical_data(), RAS), tmp_path / "scan.nii.gz")
    labels = np.zeros(SHAPE, np.uint8)
    labels[1, 2, 3], labels[2, 2, 2] = 4, 255
    nib.save(_stored(labels, RAS, "LPS"), tmp_path / "mask.nii.gz")
    scan = read_volume(tmp_path / "scan.nii.gz")
    assert np.array_equal(read_mask_volume(tmp_path / "mask.nii.gz", like=scan), labels > 0)
    nib.save(nib.Nifti1Image(labels, np.diag([1.0, 1, 1, 1])), tmp_path / "bad.nii.gz")
    with pytest.raises(AnomedError, match=r"bad\.nii\.gz: mask grid.*Fix: resample"):
        read_mask_volume(tmp_path / "bad.nii.gz", like=scan)


# ----------------------------------------------------------------------------- views


@pytest.mark.parametrize("view", VIEWS)
def test_slice_and_stack_are_exact_inverses(view):
    data = _canonical_data()
    slices = slice_volume(data, view)
    expected = {"axial": (5, 7, 6), "sagittal": (6, 5, 7), "coronal": (7, 5, 6)}[view]
    assert slices.shape == expected and slices.flags.c_contiguous
    assert np.array_equal(stack_slices(slices, view, SHAPE), data)
    with pytest.raises(ValueError):
        stack_slices(slices[1:], view, SHAPE)


def test_marker_comes_out_the_right_way_round_in_every_view(tmp_path):
    _assert_marker_views(_marker_volume())
    nib.save(_stored(_marker_volume(), RAS, "PIR"), tmp_path / "m.nii.gz")  # odd storage
    _assert_marker_views(read_volume(tmp_path / "m.nii.gz").data)
    _series(tmp_path / "dcm", data=_marker_volume() * 100, rescale=(1.0, 0.0))
    _assert_marker_views(read_volume(tmp_path / "dcm").data / 100)


def test_unknown_view_is_a_user_error():
    with pytest.raises(AnomedError, match="unknown view 'transverse'"):
        slice_volume(_canonical_data(), "transverse")


def test_nonempty_slices_skip_blank_ones():
    data = np.zeros(SHAPE, np.float32)
    data[1:5, 2:6, 1:3] = 100.0  # anatomy only in axial slices 1 and 2
    assert nonempty_slices(data, "axial").tolist() == [False, True, True, False, False]
    assert nonempty_slices(data, "sagittal").tolist() == [False, True, True, True, True, False]
    assert nonempty_slices(data, "axial", min_fraction=0.9).sum() == 0
    assert not nonempty_slices(np.full(SHAPE, 3.0), "coronal").any()
