"""Segmentation metrics: numpy label maps in, numbers out.

Dice, Hausdorff distance (HD, max of the two directed distances), HD95 and ASSD per class, in mm
(voxel spacing given in the array's axis order). Surface voxels are the object's voxels with a
background neighbour (6-connectivity in 3D); distances come from Euclidean distance transforms with
the spacing, so anisotropic slice spacing is respected.

Empty cases, chosen to match common practice (e.g. MONAI, nnU-Net's Dice):
- Dice: both empty -> NaN (excluded from means); one empty -> 0.
- Surface distances: both empty -> NaN; exactly one empty -> inf (an undefined distance is not
  hidden; tables report how many cases were infinite).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class ClassMetrics:
    dice: float
    hd: float
    hd95: float
    assd: float


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice of two boolean masks of the same shape; NaN when both are empty."""
    pred, ref = _check_masks(pred, ref)
    denom = int(pred.sum()) + int(ref.sum())
    if denom == 0:
        return math.nan
    return 2.0 * int(np.logical_and(pred, ref).sum()) / denom


def _check_masks(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred).astype(bool)
    ref = np.asarray(ref).astype(bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match reference shape {ref.shape}")
    return pred, ref


def _surface(mask: np.ndarray) -> np.ndarray:
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    eroded = ndimage.binary_erosion(mask, structure=structure, border_value=0)
    return mask & ~eroded


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each surface voxel of ``pred`` to ``ref``'s surface, and vice versa."""
    pred, ref = _check_masks(pred, ref)
    if len(spacing) != pred.ndim:
        raise ValueError(f"spacing {tuple(spacing)} has {len(spacing)} entries for a {pred.ndim}-D array")
    sp, sr = _surface(pred), _surface(ref)
    dist_to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)
    dist_to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return dist_to_ref[sp], dist_to_pred[sr]


def class_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float]) -> ClassMetrics:
    """Dice, HD, HD95 and ASSD of two boolean masks (see the module docstring for empty masks)."""
    pred, ref = _check_masks(pred, ref)
    d = dice(pred, ref)
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    if n_pred == 0 and n_ref == 0:
        return ClassMetrics(d, math.nan, math.nan, math.nan)
    if n_pred == 0 or n_ref == 0:
        return ClassMetrics(d, math.inf, math.inf, math.inf)
    a, b = surface_distances(pred, ref, spacing)
    both = np.concatenate([a, b])
    hd = float(max(a.max(), b.max()))
    hd95 = float(max(np.percentile(a, 95), np.percentile(b, 95)))
    return ClassMetrics(d, hd, hd95, float(both.mean()))


def evaluate_labels(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float], labels: dict[str, int]
) -> dict[str, ClassMetrics]:
    """Per-class metrics of two integer label maps; ``labels`` maps class names to label values."""
    pred = np.asarray(pred)
    ref = np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction shape {pred.shape} does not match reference shape {ref.shape}")
    return {name: class_metrics(pred == value, ref == value, spacing) for name, value in labels.items()}
