"""Reading and writing the volumes of post-processing: images, nnU-Net probability exports, label maps.

nnU-Net's ``--save_probabilities`` (``nnunetv2/inference/export_prediction.py``) writes per case
``CASE.npz`` with ``probabilities`` of shape (C, *image) and ``CASE.pkl`` with the case's
properties. Before saving, nnU-Net reverts its cropping and its axis transposition
(``transpose_backward``), so the array is in the axis order of the image as SimpleITK reads it
(z, y, x), at the image's own shape; ``properties['sitk_stuff']`` holds the image's spacing,
origin and direction in SimpleITK's (x, y, z) order, ``properties['spacing']`` the spacing in the
array's order. Every reader here checks that probabilities and image agree and names the case.

Image files are read through :mod:`nnunetv2_glrp.image_io` (a truncated or non-finite NIfTI file is an
error naming it, never an image with zeros), and grids are compared with its one
:meth:`~nnunetv2_glrp.image_io.Geometry.mismatch` (the converter's and ``evaluate``'s tolerances).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_output
from nnunetv2_glrp.image_io import Geometry, read_header
from nnunetv2_glrp.image_io import read_image as read_checked_image
from nnunetv2_glrp.postprocessing.fusion import check_probabilities

__all__ = ["Geometry", "case_image_files", "list_cases", "probability_files", "read_geometry", "read_image",
           "read_probabilities", "read_properties_geometry", "remove_temporary_files", "write_label_map",
           "write_probabilities"]


def case_image_files(images: Path, case: str, file_ending: str = ".nii.gz") -> list[Path]:
    """nnU-Net's channel files ``CASE_0000.nii.gz``, ``CASE_0001...`` of a case (at least channel 0)."""
    files = sorted(images.glob(f"{case}_[0-9][0-9][0-9][0-9]{file_ending}"))
    if not files or files[0].name != f"{case}_0000{file_ending}":
        raise FileNotFoundError(f"case {case}: no image {images / f'{case}_0000{file_ending}'}")
    return files


def list_cases(images: Path, file_ending: str = ".nii.gz") -> list[str]:
    """Case names of an nnU-Net image folder (files ``CASE_0000<ending>``), sorted."""
    images = Path(images)
    if not images.is_dir():
        raise FileNotFoundError(f"image folder {images} does not exist")
    suffix = f"_0000{file_ending}"
    cases = sorted(p.name[: -len(suffix)] for p in images.iterdir() if p.name.endswith(suffix))
    if not cases:
        raise FileNotFoundError(f"no images named CASE{suffix} in {images}")
    return cases


def _check_3d(path: Path, dimension: int) -> None:
    if dimension != 3:
        raise ValueError(f"{path}: a {dimension}D image, post-processing needs 3D")


def read_image(path: Path) -> tuple[np.ndarray, Geometry]:
    """A 3D image as a float32 (z, y, x) array and its geometry; the file proven complete and finite."""
    import SimpleITK as sitk

    image = read_checked_image(path)
    _check_3d(path, image.GetDimension())
    return sitk.GetArrayFromImage(image).astype(np.float32), Geometry.of(image)


def read_geometry(path: Path) -> tuple[tuple[int, ...], Geometry]:
    """Array shape (z, y, x) and geometry of a 3D image from its header; the file proven complete and finite."""
    header = read_header(path)
    _check_3d(path, header.GetDimension())
    return tuple(reversed(header.GetSize())), Geometry.of(header)


def probability_files(folder: Path, case: str) -> tuple[Path, Path]:
    """``CASE.npz`` and ``CASE.pkl`` of an nnU-Net probability export; missing files are an error."""
    npz, pkl = Path(folder) / f"{case}.npz", Path(folder) / f"{case}.pkl"
    for f in (npz, pkl):
        if not f.is_file():
            raise FileNotFoundError(f"case {case}: missing {f} (export probabilities with --save_probabilities "
                                    "or nnUNetv2_train ... --val --npz)")
    return npz, pkl


def read_properties_geometry(pkl: Path, case: str) -> Geometry:
    with open(pkl, "rb") as f:
        properties = pickle.load(f)
    try:
        stuff = properties["sitk_stuff"]
        return Geometry(tuple(stuff["spacing"]), tuple(stuff["origin"]), tuple(stuff["direction"]))
    except (KeyError, TypeError) as exc:
        raise ValueError(f"case {case}: {pkl} holds no nnU-Net properties with 'sitk_stuff' ({exc!r})") from None


def read_probabilities(folder: Path, case: str, image_shape: tuple[int, ...], image_geometry: Geometry) -> np.ndarray:
    """nnU-Net's exported probabilities of ``case``, checked against the image's shape and geometry."""
    npz, pkl = probability_files(folder, case)
    geometry = read_properties_geometry(pkl, case)
    problem = geometry.mismatch(image_geometry)
    if problem is not None:
        raise ValueError(f"case {case}: geometry of {pkl} {geometry} differs from the image's {image_geometry} "
                         f"({problem})")
    with np.load(npz) as data:
        if "probabilities" not in data:
            raise ValueError(f"case {case}: {npz} has no 'probabilities' array (keys {list(data)})")
        probs = data["probabilities"].astype(np.float32)
    if probs.shape[1:] != tuple(image_shape):
        raise ValueError(f"case {case}: probabilities {probs.shape} in {npz} do not fit the image of shape "
                         f"{tuple(image_shape)} (want (classes, *image))")
    check_probabilities(probs, case, os.fspath(npz))
    return probs


def write_label_map(path: Path, labels: np.ndarray, geometry: Geometry) -> None:
    """Write a (z, y, x) label map with ``geometry``, atomically."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(labels.astype(np.uint8 if labels.max(initial=0) < 255 else np.uint16))
    image.SetSpacing(geometry.spacing)
    image.SetOrigin(geometry.origin)
    image.SetDirection(geometry.direction)
    with atomic_output(path) as tmp:
        sitk.WriteImage(image, tmp, True)


def write_probabilities(folder: Path, case: str, probs: np.ndarray, properties: dict) -> None:
    """``CASE.npz`` + ``CASE.pkl`` in nnU-Net's layout, each written atomically."""
    with atomic_output(Path(folder) / f"{case}.npz") as tmp:
        np.savez_compressed(tmp, probabilities=probs)
    with atomic_output(Path(folder) / f"{case}.pkl") as tmp, open(tmp, "wb") as f:
        pickle.dump(properties, f)


def remove_temporary_files(folder: Path) -> None:
    """Delete the temporary files a killed run left behind (``.NAME.tmp*`` from :func:`atomic_output`)."""
    for p in Path(folder).glob(".*.tmp*"):
        if p.is_file():
            p.unlink()
