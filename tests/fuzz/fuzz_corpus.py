"""The fuzz suite's corpus: every hostile (or odd but valid) input, by kind.

See fuzz_base for what a case promises; the writers are in fuzz_images, fuzz_nifti and
fuzz_dicom. Tests import from here.
"""

from __future__ import annotations

from fuzz_base import InputCase, Writer, good_png, gray, raw, save
from fuzz_dicom import DICOM_CASES, dicom_dataset, dicom_series, write_dicom
from fuzz_images import IMAGE_CASES, NAME_CASES, png_claiming
from fuzz_nifti import NIFTI_CASES, nifti, phantom_volume

INPUT_CASES: list[InputCase] = IMAGE_CASES + NAME_CASES + NIFTI_CASES + DICOM_CASES

__all__ = [
    "DICOM_CASES",
    "IMAGE_CASES",
    "INPUT_CASES",
    "NAME_CASES",
    "NIFTI_CASES",
    "InputCase",
    "Writer",
    "dicom_dataset",
    "dicom_series",
    "good_png",
    "gray",
    "nifti",
    "phantom_volume",
    "png_claiming",
    "raw",
    "save",
    "write_dicom",
]
