"""Checks on the converter's inputs; every failure names the patient/file and what is wrong.

Files are read with :func:`nnunetv2_glrp.image_io.read_image` (a truncated ``.nii.gz`` is an error,
not an image with zeros), grids compared with :func:`nnunetv2_glrp.image_io.geometry_mismatch`.
An image is rejected when it is incomplete or has NaN or infinite voxels (the reader), is not 3D,
has no voxels, or is constant (no anatomy to learn from).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.image_io import ImageFileError, geometry_mismatch
from nnunetv2_glrp.image_io import read_image as read_checked_image

VALID_LABELS = (0, 1, 2, 3)


def read_image(path: Path, patient: str, what: str) -> sitk.Image:
    """Read a NIfTI file proven complete; FileNotFoundError if missing, ValueError if incomplete or unreadable."""
    if not path.is_file():
        raise FileNotFoundError(f"{patient}: {what} file missing: {path}")
    try:
        return read_checked_image(path)
    except ImageFileError as exc:
        raise ValueError(f"{patient}: cannot read {what} {path}: {exc.reason}") from None


def check_3d_image(image: sitk.Image, patient: str, path: Path) -> np.ndarray:
    """Return the array [Z, Y, X] of a valid 3D image, else raise ValueError."""
    if image.GetDimension() != 3:
        raise ValueError(f"{patient}: {path.name} is {image.GetDimension()}D (size {image.GetSize()}), expected 3D")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{patient}: {path.name} has {image.GetNumberOfComponentsPerPixel()} components per voxel, expected 1")
    array = sitk.GetArrayFromImage(image)
    if array.size == 0:
        raise ValueError(f"{patient}: {path.name} is empty (size {image.GetSize()})")
    if array.min() == array.max():
        raise ValueError(f"{patient}: {path.name} is constant (every voxel = {array.flat[0]})")
    return array


def check_labels(label: sitk.Image, patient: str, path: Path) -> np.ndarray:
    """Return the label array [Z, Y, X] as uint8; ValueError on non-3D input or values outside {0,1,2,3}."""
    if label.GetDimension() != 3:
        raise ValueError(f"{patient}: {path.name} is {label.GetDimension()}D (size {label.GetSize()}), expected 3D")
    array = sitk.GetArrayFromImage(label)
    if array.size == 0:
        raise ValueError(f"{patient}: {path.name} is empty (size {label.GetSize()})")
    values = np.unique(array)
    bad = [v for v in values.tolist() if v not in VALID_LABELS]
    if bad:
        shown = ", ".join(f"{v:g}" for v in bad[:10])
        raise ValueError(f"{patient}: {path.name} has label values outside {{0, 1, 2, 3}}: {shown}")
    return array.astype(np.uint8)


def check_same_geometry(image: sitk.Image, label: sitk.Image, patient: str, image_path: Path, label_path: Path) -> None:
    """ValueError naming both files when image and label do not share size, spacing, origin, direction."""
    problem = geometry_mismatch(image, label)
    if problem is not None:
        raise ValueError(f"{patient}: image {image_path.name} and label {label_path.name} differ in {problem}")
