"""Dense (fully connected) CRF on the softmax probabilities, one 2D slice at a time.

Per slice (axis 0 of the array, SimpleITK's z: the short-axis slice index), the CRF of Kraehenbuehl
and Koltun with pydensecrf: unary = -log p, a Gaussian smoothness kernel (position only) and a
bilateral appearance kernel (position + image intensity), ``iterations`` mean-field steps, Potts
compatibilities. Kernel widths are in millimetres and converted to pixels per in-plane axis with the
image spacing, so one setting fits any resolution. Intensities are scaled robustly per volume: the
1st and 99th percentiles map to 0 and 1 (clipped), so ``bilateral_intensity`` is a fraction of the
volume's intensity range. Afterwards, optionally, each foreground class keeps only its largest 3D
connected component (:mod:`.components`), so the CRF cannot add islands far from the heart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Sequence

import numpy as np

from nnunetv2_glrp.postprocessing.components import largest_component_per_class

#: probabilities are clipped here before the log: a hard 0 would make an infinite unary
_EPS = 1e-8


@dataclass(frozen=True)
class CRFSetting:
    """One post-processing candidate: CRF parameters and the largest-component clean-up.

    ``use_crf=False`` gives "no CRF" (argmax), optionally with ``largest_component``."""

    name: str = "crf"
    use_crf: bool = True
    iterations: int = 5
    gaussian_mm: float = 3.0
    gaussian_weight: float = 3.0
    bilateral_mm: float = 20.0
    bilateral_intensity: float = 0.1
    bilateral_weight: float = 5.0
    largest_component: bool = False

    def __post_init__(self):
        if self.iterations < 1 or min(self.gaussian_mm, self.bilateral_mm, self.bilateral_intensity) <= 0:
            raise ValueError(f"CRF setting {self.name!r}: iterations and kernel widths must be positive ({self})")
        if min(self.gaussian_weight, self.bilateral_weight) < 0:
            raise ValueError(f"CRF setting {self.name!r}: kernel weights must not be negative ({self})")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "CRFSetting":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"CRF setting {data.get('name')!r}: unknown keys {unknown}")
        return cls(**data)


NO_CRF = CRFSetting(name="no CRF", use_crf=False)
LARGEST_COMPONENT_ONLY = CRFSetting(name="largest component only", use_crf=False, largest_component=True)
#: the paper's always-on 2D CRF (``predict --crf on``): no clean-up afterwards
PAPER_SETTING = CRFSetting(name="paper (always on)")


def mm_to_pixels(width_mm: float, spacing_2d: Sequence[float]) -> tuple[float, float]:
    """A kernel width in mm as pixels along each in-plane axis (rows, columns) of the given spacing."""
    if len(spacing_2d) != 2 or min(spacing_2d) <= 0:
        raise ValueError(f"in-plane spacing must be two positive numbers, got {tuple(spacing_2d)}")
    return (width_mm / float(spacing_2d[0]), width_mm / float(spacing_2d[1]))


def scale_intensities(image: np.ndarray, low: float = 1.0, high: float = 99.0) -> np.ndarray:
    """``image`` with its ``low``/``high`` percentiles mapped to 0/1, clipped, as float32."""
    image = np.asarray(image, dtype=np.float32)
    lo, hi = np.percentile(image, [low, high])
    if hi <= lo:  # a constant image: no appearance information
        return np.zeros_like(image)
    return np.clip((image - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


def crf_slice(probs: np.ndarray, scaled_image: np.ndarray, spacing_2d: Sequence[float],
              setting: CRFSetting) -> np.ndarray:
    """Mean-field marginals of one slice.

    probs: (C, H, W) softmax probabilities; scaled_image: (H, W) in [0, 1]; spacing_2d: (mm per row,
    mm per column). Returns (C, H, W) float32 marginals."""
    import pydensecrf.densecrf as dcrf
    from pydensecrf.utils import create_pairwise_bilateral, create_pairwise_gaussian

    n_classes, height, width = probs.shape
    unary = -np.log(np.clip(probs, _EPS, 1.0)).reshape(n_classes, -1)
    crf = dcrf.DenseCRF(height * width, n_classes)
    crf.setUnaryEnergy(np.ascontiguousarray(unary, dtype=np.float32))
    gauss = create_pairwise_gaussian(mm_to_pixels(setting.gaussian_mm, spacing_2d), (height, width))
    crf.addPairwiseEnergy(np.ascontiguousarray(gauss, dtype=np.float32), compat=float(setting.gaussian_weight))
    bilateral = create_pairwise_bilateral(mm_to_pixels(setting.bilateral_mm, spacing_2d),
                                          (setting.bilateral_intensity,), scaled_image[..., None], chdim=2)
    crf.addPairwiseEnergy(np.ascontiguousarray(bilateral, dtype=np.float32),
                          compat=float(setting.bilateral_weight))
    q = np.array(crf.inference(setting.iterations), dtype=np.float32)
    return q.reshape(n_classes, height, width)


def postprocess(probs: np.ndarray, image: np.ndarray, spacing: Sequence[float], setting: CRFSetting) -> np.ndarray:
    """Label map of a volume after the post-processing ``setting``.

    probs: (C, Z, Y, X) probabilities; image: (Z, Y, X) intensities; spacing: (z, y, x) in mm.
    The CRF runs on every slice along Z; returns a (Z, Y, X) uint8 label map."""
    if probs.ndim != 4 or probs.shape[1:] != image.shape:
        raise ValueError(f"probabilities {probs.shape} do not fit the image {image.shape} (want (C, *image))")
    if setting.use_crf:
        scaled = scale_intensities(image)
        labels = np.empty(image.shape, dtype=np.uint8)
        for z in range(image.shape[0]):
            q = crf_slice(np.ascontiguousarray(probs[:, z], dtype=np.float32), scaled[z], spacing[1:], setting)
            labels[z] = q.argmax(0)
    else:
        labels = probs.argmax(0).astype(np.uint8)
    if setting.largest_component:
        labels = largest_component_per_class(labels)
    return labels
