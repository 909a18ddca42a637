"""Base-to-apex slice order: detect it from the labels and flip stacks without moving them in space.

GLRP's position label x = n/m counts slices from the base, so every converted stack is stored
base-first (array index 0 = base). The base is the end of the stack with more LV + MYO: we compare
the LV+MYO area (ACDC's labels 2 and 3, or the values the caller names, e.g. (1, 2) for a dataset
labelled LV = 1, MYO = 2; summed over the ED and ES label maps) of the first and second half
of the LABELLED EXTENT (first to last slice with any LV/MYO). Slices outside it carry no heart label
(above the base: atria and great vessels; below the apex) and would otherwise count as "small
heart": two empty slices above the base of a short stack flipped real patients to apex-first. On a
tie (or no LV/MYO at all) the stored order is kept and the evidence says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

LV_MYO_LABELS = (2, 3)


@dataclass(frozen=True)
class SliceOrder:
    """How a patient's stack was stored and whether the converter flipped it."""

    stored: str  # "base-first" | "apex-first"
    flipped: bool
    evidence: str

    def to_json(self) -> dict:
        return {"stored": self.stored, "flipped": self.flipped, "evidence": self.evidence}


def lv_myo_area_per_slice(label_arrays: list[np.ndarray], labels: tuple[int, ...] = LV_MYO_LABELS) -> np.ndarray:
    """Voxel count of LV + MYO (values ``labels``) per slice, summed over the label arrays ([Z, Y, X] each) -> [Z]."""
    areas = None
    for lab in label_arrays:
        a = np.isin(lab, labels).sum(axis=(1, 2)).astype(np.int64)
        areas = a if areas is None else areas + a
    return areas


def detect_slice_order(label_arrays: list[np.ndarray], labels: tuple[int, ...] = LV_MYO_LABELS) -> SliceOrder:
    """Decide base-first vs apex-first from label arrays [Z, Y, X] (index 0 = first stored slice).

    ``labels``: the values of LV and MYO in the arrays (default ACDC's (2, 3)). The halves are taken
    within the labelled extent; its middle slice, when odd, belongs to neither."""
    areas = lv_myo_area_per_slice(label_arrays, labels)
    labelled = np.flatnonzero(areas)
    lo, hi = (int(labelled[0]), int(labelled[-1]) + 1) if labelled.size else (0, len(areas))
    extent = areas[lo:hi]
    m = len(extent)
    first, second = int(extent[: m // 2].sum()), int(extent[(m + 1) // 2:].sum())
    profile = ",".join(str(int(a)) for a in areas)
    evidence = (f"LV+MYO voxels (ED+ES) within the labelled slices {lo}-{hi - 1}: first half {first}, "
                f"second half {second}; per slice [{profile}]")
    if second > first:
        return SliceOrder("apex-first", True, evidence)
    if first == second:
        return SliceOrder("base-first", False, evidence + "; undetermined, stored order kept")
    return SliceOrder("base-first", False, evidence)


def flip_slices(image: sitk.Image) -> sitk.Image:
    """Reverse the slice (z) axis of a 3D image keeping every voxel at its physical position.

    The array is reversed along z, the origin moves to the physical point of the last slice and
    the third column of the direction matrix changes sign."""
    if image.GetDimension() != 3:
        raise ValueError(f"flip_slices needs a 3D image, got {image.GetDimension()}D")
    array = sitk.GetArrayFromImage(image)[::-1]
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array))
    size = image.GetSize()
    flipped.SetSpacing(image.GetSpacing())
    flipped.SetOrigin(image.TransformIndexToPhysicalPoint((0, 0, size[2] - 1)))
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)
    direction[:, 2] *= -1.0
    flipped.SetDirection(tuple(direction.ravel()))
    return flipped
