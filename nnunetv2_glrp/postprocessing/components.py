"""Largest 3D connected component per foreground class (26-connectivity); the rest becomes background."""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def largest_component_per_class(labels: np.ndarray, background: int = 0) -> np.ndarray:
    """A copy of the integer label map where each class other than ``background`` keeps only its largest
    connected component; removed voxels are set to ``background`` (as nnU-Net's own post-processing)."""
    out = labels.copy()
    structure = np.ones((3,) * labels.ndim, dtype=bool)
    for value in np.unique(labels):
        if value == background:
            continue
        components, n = ndimage.label(labels == value, structure=structure)
        if n <= 1:
            continue
        sizes = np.bincount(components.ravel())
        sizes[0] = 0
        out[(components != 0) & (components != sizes.argmax())] = background
    return out
