"""Base-to-apex slice order: detect it from the labels and flip stacks without moving them in space.

GLRP's position label x = n/m counts slices from the base, so every converted stack is stored
base-first (array index 0 = base). A stack is flipped only on decisive evidence; otherwise the stored
order is kept and the evidence says "undecided, kept as stored". The rule, per patient (label maps of
ED and ES summed):

1. LV+MYO cue. Take the LABELLED EXTENT (first to last slice with any LV/MYO: slices outside it hold
   no heart label, e.g. atria above the base or nothing beyond the apex) and its basal and apical
   thirds (``max(1, m // 3)`` slices at each end of m labelled slices). The end whose third holds at
   least :data:`DECISIVE_RATIO` (1.3) times the LV+MYO voxels of the other is the base. Below that
   ratio the cue is undecided: on real stacks the LV cross-section is nearly constant over the middle
   and the basal slice is often partial, so a 3 % difference between halves says nothing.
2. RV cue, where RV is labelled (ACDC's label 1; Sunnybrook has none): the RV is largest at the base
   and ends before the apex. Same thirds (of the LV+MYO extent), same ratio.
3. Both cues decisive and agreeing, or one decisive and the other undecided or absent: that order.
   Conflicting or both undecided: undecided, kept as stored.

Empty slices are reported in the evidence but decide nothing: they occur beyond the apex and above
the base alike (two empty slices above the base of a short stack would otherwise flip it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

LV_MYO_LABELS = (2, 3)
RV_LABELS = (1,)
#: the larger end third must hold at least this many times the voxels of the other to decide
DECISIVE_RATIO = 1.3


@dataclass(frozen=True)
class SliceOrder:
    """How a patient's stack was stored and whether the converter flipped it."""

    stored: str  # "base-first" | "apex-first" | "undecided" (kept as stored, not flipped)
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


def _thirds_cue(areas: np.ndarray, name: str) -> tuple[str | None, str]:
    """("base-first" | "apex-first" | None, evidence) from the end thirds of ``areas`` (the labelled extent)."""
    k = max(1, len(areas) // 3)
    first, last = int(areas[:k].sum()), int(areas[-k:].sum())
    text = f"{name} first {k} slice(s) {first}, last {k} slice(s) {last}"
    if len(areas) < 2 or max(first, last) == 0:
        return None, text + " (undecided)"
    if first >= DECISIVE_RATIO * last:
        return "base-first", text + f" (ratio {first / max(last, 1):.2f} >= {DECISIVE_RATIO}: base-first)"
    if last >= DECISIVE_RATIO * first:
        return "apex-first", text + f" (ratio {last / max(first, 1):.2f} >= {DECISIVE_RATIO}: apex-first)"
    return None, text + f" (ratio {max(first, last) / max(min(first, last), 1):.2f} < {DECISIVE_RATIO}: undecided)"


def detect_slice_order(label_arrays: list[np.ndarray], labels: tuple[int, ...] = LV_MYO_LABELS,
                       rv_labels: tuple[int, ...] = RV_LABELS) -> SliceOrder:
    """Decide base-first vs apex-first from label arrays [Z, Y, X] (index 0 = first stored slice).

    ``labels``: the values of LV and MYO (default ACDC's (2, 3)); ``rv_labels``: those of the RV
    (default ACDC's (1,); ``()`` for a dataset without RV). See the module docstring for the rule."""
    areas = lv_myo_area_per_slice(label_arrays, labels)
    profile = ",".join(str(int(a)) for a in areas)
    labelled = np.flatnonzero(areas)
    if not labelled.size:
        return SliceOrder("undecided", False, f"no LV/MYO labels; per slice [{profile}]; undecided, kept as stored")
    lo, hi = int(labelled[0]), int(labelled[-1]) + 1
    cues = [_thirds_cue(areas[lo:hi], "LV+MYO voxels (ED+ES):")]
    rv_text = "no RV labels"
    if rv_labels:
        rv = lv_myo_area_per_slice(label_arrays, rv_labels)
        if rv.any():
            cues.append(_thirds_cue(rv[lo:hi], "RV voxels (ED+ES):"))
            rv_text = cues[-1][1]
    empty = [int(z) for z in np.flatnonzero(areas == 0)]
    evidence = (f"labelled slices {lo}-{hi - 1} of {len(areas)}, empty slices {empty or 'none'}; {cues[0][1]}; "
                f"{rv_text}; LV+MYO per slice [{profile}]")
    decided = {c[0] for c in cues if c[0] is not None}
    if len(decided) != 1:
        why = "cues conflict" if decided else "no decisive cue"
        return SliceOrder("undecided", False, f"{evidence}; {why}: undecided, kept as stored")
    stored = decided.pop()
    return SliceOrder(stored, stored == "apex-first", f"{evidence}; {stored}")


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
