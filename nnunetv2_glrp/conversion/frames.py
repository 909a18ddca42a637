"""3D frames out of 3D or 4D NIfTI files, for the readers of ACDC, user folders and M&Ms.

A 4D file is (x, y, z, t): frame ``n`` (1-based) is the 3D volume at t = n - 1 with the 3D part of
the header (spacing, origin, the upper-left 3 x 3 of the direction). A 3D file is one frame. Every
failure is a ValueError/FileNotFoundError naming the patient, the file and what is wrong.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.conversion.validation import check_3d_image, check_same_geometry, read_image


def volume_3d(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A 3D image of ``array`` [Z, Y, X] with the 3D part of ``reference``'s geometry (3D or 4D)."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    dim = reference.GetDimension()
    image.SetSpacing(tuple(reference.GetSpacing()[:3]))
    image.SetOrigin(tuple(reference.GetOrigin()[:3]))
    direction = np.array(reference.GetDirection(), dtype=float).reshape(dim, dim)[:3, :3]
    image.SetDirection(tuple(direction.ravel()))
    return image


def n_frames(image: sitk.Image) -> int:
    """Frames of a 3D (1) or 4D (size along t) image; ValueError for other dimensions."""
    if image.GetDimension() == 3:
        return 1
    if image.GetDimension() == 4:
        return int(image.GetSize()[3])
    raise ValueError(f"{image.GetDimension()}D image: expected 3D or 4D")


def frame_of(image: sitk.Image, frame: int | None, patient: str, path: Path) -> sitk.Image:
    """Frame ``frame`` (1-based) of a 4D image, or the 3D image itself (``frame`` then not checked)."""
    dim = image.GetDimension()
    if dim == 3:
        return image
    if dim != 4:
        raise ValueError(f"{patient}: {path.name} is {dim}D (size {image.GetSize()}), expected 3D or 4D")
    count = image.GetSize()[3]
    if frame is None or not 1 <= frame <= count:
        raise ValueError(f"{patient}: {path.name} is 4D with {count} frames; frame {frame} is not one of 1..{count}")
    return volume_3d(sitk.GetArrayFromImage(image)[frame - 1], image)


def read_labeled_pair(image_path: Path, label_path: Path, frame: int | None, patient: str, phase: str,
                      remap) -> tuple[sitk.Image, sitk.Image]:
    """(image, uint8 label on exactly the image's grid) of one labeled frame.

    ``remap(array, patient, path)`` turns the source label values into the dataset's numbering (and
    rejects unknown values). Image and label may each be 3D or 4D (then ``frame`` is taken)."""
    image = frame_of(read_image(image_path, patient, f"{phase} image"), frame, patient, image_path)
    check_3d_image(image, patient, image_path)
    label = frame_of(read_image(label_path, patient, f"{phase} label"), frame, patient, label_path)
    if label.GetDimension() != 3:
        raise ValueError(f"{patient}: {label_path.name} is {label.GetDimension()}D, expected 3D")
    check_same_geometry(image, label, patient, image_path, label_path)
    clean = sitk.GetImageFromArray(remap(sitk.GetArrayFromImage(label), patient, label_path))
    clean.CopyInformation(image)
    return image, clean


def cine_arrays(path: Path, reference: sitk.Image, patient: str,
                reference_name: str = "the labeled frame") -> list[np.ndarray]:
    """Every frame [Z, Y, X] of a 4D cine whose 3D size must be ``reference``'s (ValueError otherwise).

    ``reference_name`` names the reference in the size-mismatch error (ACDC: "the ED image")."""
    cine = read_image(path, patient, "4D cine")
    if cine.GetDimension() != 4:
        raise ValueError(f"{patient}: cine {path.name} is {cine.GetDimension()}D (size {cine.GetSize()}), expected 4D")
    if tuple(cine.GetSize()[:3]) != tuple(reference.GetSize()):
        raise ValueError(f"{patient}: cine {path.name} frames have size {cine.GetSize()[:3]}, {reference_name} has "
                         f"{reference.GetSize()} (3D/4D shape mismatch)")
    array = sitk.GetArrayFromImage(cine)  # [T, Z, Y, X]
    if array.shape[0] == 0:
        raise ValueError(f"{patient}: cine {path.name} has no frames")
    return [array[t] for t in range(array.shape[0])]


def matching_frame(image: np.ndarray, frames: list[np.ndarray], tolerance: float = 1e-3) -> tuple[int | None, float]:
    """(1-based number of the frame of ``frames`` that equals ``image``, or None; the smallest difference).

    The difference of a frame is max |image - frame| over the image's intensity range (max - min), so a
    3D ED file stored as float64 still matches its int16 cine frame; a frame matches when its difference
    is at most ``tolerance`` and it is the only one that does (two matching frames: None, ambiguous)."""
    reference = np.asarray(image, dtype=np.float64)
    scale = float(reference.max() - reference.min()) or 1.0
    differences = [float(np.abs(reference - np.asarray(f, dtype=np.float64)).max()) / scale
                   if np.shape(f) == reference.shape else np.inf for f in frames]
    matching = [n for n, d in enumerate(differences, start=1) if d <= tolerance]
    return (matching[0] if len(matching) == 1 else None), min(differences, default=np.inf)
