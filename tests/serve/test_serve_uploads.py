"""Uploads are typed by their bytes, bounded before decoding and stored under server names."""

import io
import zipfile

import pytest
from conftest import dicom_zip, encoded, nifti_bytes, png_bytes, png_header

from anomed.serve.config import ServeConfig
from anomed.serve.errors import ApiError
from anomed.serve.uploads import (
    check_contents,
    check_image_header,
    clean_label,
    sniff,
    stage_upload,
)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (png_bytes(), "png"),
        (encoded("JPEG"), "jpeg"),
        (encoded("TIFF"), "tiff"),
        (encoded("BMP"), "bmp"),
        (nifti_bytes(gz=False), "nifti"),
        (nifti_bytes(gz=True), "nifti_gz"),
        (b"\0" * 128 + b"DICM" + b"\0" * 64, "dicom"),
        (b"PK\x03\x04" + b"\0" * 60, "zip"),
        (b"hello, this is text", None),
        (b"BM and then some words, not a bitmap", None),
        (__import__("gzip").compress(b"not a nifti" * 50), None),
    ],
)
def test_sniff_reads_the_type_from_the_bytes(data, kind):
    assert sniff(data[:4096]) == kind


@pytest.mark.parametrize(
    "name", ["../etc/passwd.png", "a/b.png", "C:\\x\\scan.png", "..", "a\x00.png"]
)
def test_path_like_or_control_names_are_refused(name):
    with pytest.raises(ApiError) as exc:
        clean_label(name)
    assert exc.value.status == 400


def test_plain_names_are_kept_as_labels_only(tmp_path):
    assert clean_label("scan 01 (é).PNG") == "scan 01 (é).PNG"
    assert clean_label("12:30 scan.png") == "12:30 scan.png"
    assert clean_label(None) == "upload"
    staged = stage_upload(io.BytesIO(png_bytes()), "scan.tiff", tmp_path, 1 << 20)
    # the name said TIFF, the bytes say PNG: the stored name follows the bytes
    assert staged.kind == "png" and staged.path == tmp_path / "input.png"
    assert [p.name for p in tmp_path.iterdir()] == ["input.png"]
    assert len(staged.sha256) == 64 and staged.size == len(png_bytes())


@pytest.mark.parametrize(
    ("data", "limit", "status"),
    [(b"", 1 << 20, 400), (b"plain text\n" * 10, 1 << 20, 415), (png_bytes(), 100, 413)],
)
def test_stage_refuses_empty_unknown_and_oversize(tmp_path, data, limit, status):
    with pytest.raises(ApiError) as exc:
        stage_upload(io.BytesIO(data), "x.png", tmp_path, limit)
    assert exc.value.status == status


def test_huge_png_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(png_header(40_000, 40_000))
    with pytest.raises(ApiError) as exc:
        check_image_header(path, "bomb.png", max_pixels=50_000_000)
    assert exc.value.status == 413 and "bomb.png" in exc.value.message
    path.write_bytes(png_header(9000, 9000))  # below Pillow's own bomb limit, above ours
    with pytest.raises(ApiError) as exc:
        check_image_header(path, "big.png", max_pixels=50_000_000)
    assert exc.value.status == 413 and "9000 x 9000" in exc.value.message


def test_nifti_header_bounds_the_voxels(tmp_path):
    staged = stage_upload(io.BytesIO(nifti_bytes((40, 40, 8))), "v.nii.gz", tmp_path, 1 << 24)
    with pytest.raises(ApiError) as exc:
        check_contents(staged, ServeConfig(max_megavoxels=0.01))
    assert exc.value.status == 413 and "voxel count" in exc.value.message
    assert check_contents(staged, ServeConfig()).target == staged.path


def test_zip_members_are_unpacked_under_numbered_names(tmp_path):
    extra = {"../../evil.dcm": b"\0" * 128 + b"DICM" + b"x", "README.txt": b"notes"}
    data = dicom_zip(tmp_path / "src", extra=extra)
    folder = tmp_path / "study"
    staged = check_contents(stage_upload(io.BytesIO(data), "s.zip", folder, 1 << 24), ServeConfig())
    names = sorted(p.name for p in staged.target.iterdir())
    assert staged.target == folder / "series"
    assert names == [f"{i:05d}.dcm" for i in range(6)]  # 5 slices + the fake; README skipped
    assert not (tmp_path / "evil.dcm").exists() and not any(tmp_path.parent.glob("evil*"))


def test_zip_limits(tmp_path):
    data = dicom_zip(tmp_path / "src")
    cfg = ServeConfig(max_zip_members=3)
    with pytest.raises(ApiError) as exc:
        check_contents(stage_upload(io.BytesIO(data), "s.zip", tmp_path / "a", 1 << 24), cfg)
    assert exc.value.status == 413 and "member count" in exc.value.message
    bomb = io.BytesIO()
    with zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("x.dcm", b"\0" * 128 + b"DICM" + b"\0" * (3 << 20))  # 3 MiB of zeros
    bomb.seek(0)
    small = ServeConfig(max_upload_mb=0.5)  # unpacking allows 4 x 0.5 MiB
    with pytest.raises(ApiError) as exc:
        check_contents(stage_upload(bomb, "b.zip", tmp_path / "b", 1 << 20), small)
    assert exc.value.status == 413
    with pytest.raises(ApiError) as exc:
        staged = stage_upload(io.BytesIO(b"PK\x03\x04broken"), "c.zip", tmp_path / "c", 1 << 20)
        check_contents(staged, ServeConfig())
    assert exc.value.status == 422
