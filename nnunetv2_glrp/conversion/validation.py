"""Checks on the converter's inputs; every failure names the patient/file and what is wrong.

Tolerances where ACDC gives none: spacing may differ by 1e-4 relative, origin by 1e-3 mm plus
1e-4 of the spacing, direction cosines by 1e-4 (ITK's own geometry check uses similar values).
An image is rejected when it is not 3D, has no voxels, or is constant (no anatomy to learn from).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

VALID_LABELS = (0, 1, 2, 3)
SPACING_RTOL = 1e-4
ORIGIN_ATOL_MM = 1e-3
DIRECTION_ATOL = 1e-4


def read_image(path: Path, patient: str, what: str) -> sitk.Image:
    """Read a NIfTI file; FileNotFoundError if missing, ValueError if ITK cannot read it."""
    if not path.is_file():
        raise FileNotFoundError(f"{patient}: {what} file missing: {path}")
    try:
        return sitk.ReadImage(os.fspath(path))
    except RuntimeError as exc:
        first_line = str(exc).strip().splitlines()[-1] if str(exc).strip() else ""
        raise ValueError(f"{patient}: cannot read {what} {path}: {first_line}") from exc


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


def geometry_mismatch(a: sitk.Image, b: sitk.Image) -> str | None:
    """Describe the first geometric difference between two 3D images, or None if they match."""
    if a.GetSize() != b.GetSize():
        return f"size {a.GetSize()} vs {b.GetSize()}"
    sa, sb = np.array(a.GetSpacing()), np.array(b.GetSpacing())
    if not np.allclose(sa, sb, rtol=SPACING_RTOL, atol=0.0):
        return f"spacing {tuple(sa)} vs {tuple(sb)}"
    oa, ob = np.array(a.GetOrigin()), np.array(b.GetOrigin())
    if not np.allclose(oa, ob, rtol=0.0, atol=ORIGIN_ATOL_MM + 1e-4 * float(sa.max())):
        return f"origin {tuple(oa)} vs {tuple(ob)}"
    da, db = np.array(a.GetDirection()), np.array(b.GetDirection())
    if not np.allclose(da, db, rtol=0.0, atol=DIRECTION_ATOL):
        return f"direction {tuple(da)} vs {tuple(db)}"
    return None


def check_same_geometry(image: sitk.Image, label: sitk.Image, patient: str, image_path: Path, label_path: Path) -> None:
    """ValueError naming both files when image and label do not share size, spacing, origin, direction."""
    problem = geometry_mismatch(image, label)
    if problem is not None:
        raise ValueError(f"{patient}: image {image_path.name} and label {label_path.name} differ in {problem}")
