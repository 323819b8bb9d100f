"""3D head phantoms: anatomy, asymmetry, sequence contrasts and the files written."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from anomed.data.phantoms.heads import (
    CSF,
    ENHANCING,
    EYE,
    LESION_CLASSES,
    MARKER,
    NECROSIS,
    OEDEMA,
    SEQUENCES,
    WHITE,
    VolumePhantomConfig,
    load_phantom_cases,
    make_head,
    render_sequence,
    write_phantom_volumes,
)
from anomed.data.sample import ABNORMAL, NORMAL
from anomed.data.volumes import read_mask_volume, read_volume, slice_volume
from anomed.errors import AnomedError

SHAPE = (40, 40, 32)
TINY = (32, 32, 24)


@pytest.fixture(scope="module")
def head():
    return make_head(np.random.default_rng(5), SHAPE)


def test_head_is_deterministic_and_the_lesion_only_adds(head):
    labels, mask = head
    again, mask_again = make_head(np.random.default_rng(5), SHAPE)
    assert labels.shape == SHAPE and mask.dtype == bool
    assert np.array_equal(labels, again) and np.array_equal(mask, mask_again)
    normal, no_lesion = make_head(np.random.default_rng(5), SHAPE, lesion=False)
    assert not no_lesion.any()
    assert np.array_equal(normal[~mask], labels[~mask])  # same anatomy around the tumour
    other, _ = make_head(np.random.default_rng(6), SHAPE)
    assert (other != labels).mean() > 0.01


def test_lesion_mask_is_exactly_the_tumour_classes(head):
    labels, mask = head
    assert np.array_equal(mask, np.isin(labels, LESION_CLASSES))
    assert all((labels == k).any() for k in (OEDEMA, ENHANCING, NECROSIS))
    assert 0.002 < mask.mean() < 0.1


def test_head_is_asymmetric_the_right_way_round(head):
    labels, _ = head
    marker = np.argwhere(labels == MARKER).mean(0)
    eyes = np.argwhere(labels == EYE).mean(0)
    assert marker[0] < SHAPE[0] / 3  # axis 0 runs to the patient's right: marker on the left
    assert eyes[1] > 0.75 * SHAPE[1]  # anterior
    axial = slice_volume(labels == MARKER, "axial")
    assert np.argwhere(axial)[:, 2].min() > SHAPE[0] / 2  # radiological: left on image right
    axial_eyes = slice_volume(labels == EYE, "axial")
    assert np.argwhere(axial_eyes)[:, 1].max() < SHAPE[1] / 4  # anterior at the top


def test_sequence_contrasts(head):
    labels, _ = head
    means = {}
    for seq in SEQUENCES:
        image = render_sequence(labels, seq, np.random.default_rng(0))
        assert image.dtype == np.float32 and image.shape == SHAPE and image.min() >= 0
        means[seq] = {k: float(image[labels == k].mean()) for k in (CSF, WHITE, OEDEMA, ENHANCING)}
    assert means["t1"][CSF] < 0.5 * means["t1"][WHITE]  # T1: CSF dark, WM bright
    assert means["t2"][CSF] > 1.5 * means["t2"][WHITE]  # T2: CSF bright
    assert means["flair"][CSF] < 0.5 * means["flair"][WHITE]  # FLAIR: CSF suppressed
    assert means["flair"][OEDEMA] > 1.5 * means["flair"][WHITE]  # FLAIR: oedema bright
    assert means["t1ce"][ENHANCING] > 1.5 * means["t1"][ENHANCING]  # contrast enhancement
    again = render_sequence(labels, "t2", np.random.default_rng(0))
    assert np.array_equal(again, render_sequence(labels, "t2", np.random.default_rng(0)))
    with pytest.raises(AnomedError, match="unknown sequence 'dwi'"):
        render_sequence(labels, "dwi", np.random.default_rng(0))


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp("vol") / "phantom"
    return root, write_phantom_volumes(root, VolumePhantomConfig(n_cases=2, seed=3, shape=TINY))


def test_files_labels_and_manifest(written):
    root, cases = written
    assert [c.label for c in cases] == [NORMAL, ABNORMAL]
    manifest = json.loads((root / "cases.json").read_text())
    assert [c["name"] for c in manifest["cases"]] == ["case_000", "case_001"]
    assert load_phantom_cases(root) == cases
    for case in cases:
        assert sorted(case.sequences) == sorted(SEQUENCES)
        img = nib.load(case.sequences["flair"])
        assert img.shape == TINY and nib.aff2axcodes(img.affine) == ("R", "A", "S")
        assert np.allclose(np.diag(img.affine)[:3], (1.0, 1.0, 1.5))
    normal_mask, lesion_mask = (read_volume(c.mask).data for c in cases)
    assert not normal_mask.any() and lesion_mask.sum() > 20
    assert cases[0].dicom is None and cases[1].dicom == root / "case_001" / "dicom_t1"
    assert len(list(cases[1].dicom.glob("*.dcm"))) == TINY[2]  # one file per axial slice


def test_lesion_is_bright_in_flair_where_the_mask_says(written):
    _, cases = written
    flair = read_volume(cases[1].sequences["flair"]).data
    mask = read_mask_volume(cases[1].mask, like=read_volume(cases[1].sequences["t1"]))
    brain_like = flair[~mask & (flair > np.percentile(flair, 60))]
    assert flair[mask].mean() > 1.3 * np.median(brain_like)


def test_dicom_case_reads_back_as_its_nifti(written):
    _, cases = written
    nifti = read_volume(cases[1].sequences["t1"])
    dicom = read_volume(cases[1].dicom)
    assert dicom.kind == "dicom" and dicom.window is not None
    assert np.allclose(dicom.affine, nifti.affine)
    assert np.abs(dicom.data - nifti.data).max() <= 0.25 + 1e-3  # half the 0.5 rescale slope


def test_same_seed_same_volumes_and_root_is_protected(written, tmp_path):
    root, cases = written
    again = write_phantom_volumes(tmp_path / "again", VolumePhantomConfig(2, seed=3, shape=TINY))
    for a, b in zip(cases, again, strict=True):
        for seq in SEQUENCES:
            assert np.array_equal(
                read_volume(a.sequences[seq]).data, read_volume(b.sequences[seq]).data
            )
    with pytest.raises(AnomedError, match="not empty.*overwrite"):
        write_phantom_volumes(tmp_path / "again", VolumePhantomConfig(1, shape=TINY))
    write_phantom_volumes(tmp_path / "again", VolumePhantomConfig(1, shape=TINY), overwrite=True)
    assert [c.name for c in load_phantom_cases(tmp_path / "again")] == ["case_000"]
    assert not list(tmp_path.glob(".again*"))
    with pytest.raises(AnomedError, match="abnormal_fraction"):
        write_phantom_volumes(tmp_path / "bad", VolumePhantomConfig(abnormal_fraction=2.0))
    with pytest.raises(AnomedError, match="cases.json: missing"):
        load_phantom_cases(tmp_path)
