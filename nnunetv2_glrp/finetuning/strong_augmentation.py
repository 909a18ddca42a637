"""Views of an unlabeled slice for the ``_semi`` recipe: one weak view, two strong views, CutMix boxes.

Every random number comes from the ``numpy.random.Generator`` passed in (never the global RNGs): the views run in
a background thread while nnU-Net's own augmentation draws from the global RNGs in the main process, and a
batch must depend on its seed only (resume). So the weak view is our own implementation of nnU-Net's 2D spatial
augmentation (random patch location, rotation, isotropic scaling, mirroring, with nnU-Net's 2D probabilities)
rather than batchgeneratorsv2's ``SpatialTransform``, which draws from the global RNGs; elastic deformation
(off in nnU-Net's 2D default) is left out. Strong views (after UniMatch, grey-value form): intensity jitter
(contrast, brightness, gamma), Gaussian blur; CutMix is applied by the caller with :func:`cutmix_box`.

Shapes: a slice is float32 [C, Y, X] (numpy, as read from the preprocessed folder); views are torch float32
[C, *patch].
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from nnunetv2_glrp.finetuning.semi_config import SemiSupervisedConfig


def _patch_centre(size: int, patch: int, rng: np.random.Generator) -> float:
    lo, hi = (patch - 1) / 2, size - 1 - (patch - 1) / 2
    return (size - 1) / 2 if hi <= lo else float(rng.uniform(lo, hi))


def weak_view(image: np.ndarray, patch_size: Sequence[int], cfg: SemiSupervisedConfig,
              rng: np.random.Generator) -> torch.Tensor:
    """nnU-Net-style spatial augmentation of one slice [C, Y, X] -> [C, *patch_size] (bilinear, zeros outside)."""
    py, px = (int(p) for p in patch_size)
    _, size_y, size_x = image.shape
    cy, cx = _patch_centre(size_y, py, rng), _patch_centre(size_x, px, rng)
    angle = float(rng.uniform(*cfg.rotation)) if rng.random() < cfg.p_rotation else 0.0
    scale = float(rng.uniform(*cfg.scaling)) if rng.random() < cfg.p_scaling else 1.0
    flips = [axis for axis in (1, 2) if rng.random() < cfg.p_mirror]
    oy = torch.arange(py, dtype=torch.float32) - (py - 1) / 2
    ox = torch.arange(px, dtype=torch.float32) - (px - 1) / 2
    gy, gx = torch.meshgrid(oy, ox, indexing="ij")
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    src_y = cy + cos * gy - sin * gx
    src_x = cx + sin * gy + cos * gx
    grid = torch.stack([2 * src_x / max(size_x - 1, 1) - 1, 2 * src_y / max(size_y - 1, 1) - 1], dim=-1)
    source = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))[None]
    view = torch.nn.functional.grid_sample(source, grid[None], mode="bilinear", padding_mode="zeros",
                                           align_corners=True)[0]
    return torch.flip(view, flips) if flips else view


def _gaussian_blur(view: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of each channel of [C, Y, X] (edges replicated), kernel radius ceil(3 sigma)."""
    radius = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    out = torch.nn.functional.pad(view[:, None], [radius] * 4, mode="replicate")  # [C, 1, Y + 2r, X + 2r]
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, -1, 1))
    out = torch.nn.functional.conv2d(out, kernel.view(1, 1, 1, -1))
    return out[:, 0]


def strong_view(weak: torch.Tensor, cfg: SemiSupervisedConfig, rng: np.random.Generator) -> torch.Tensor:
    """Intensity jitter (p_intensity) then Gaussian blur (p_blur) of a weak view [C, Y, X] -> same shape."""
    view = weak.clone()
    if rng.random() < cfg.p_intensity:
        mean = view.mean(dim=(1, 2), keepdim=True)
        view = (view - mean) * float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)) + mean
        view = view + float(rng.uniform(-cfg.brightness, cfg.brightness))
        low = view.amin(dim=(1, 2), keepdim=True)
        span = (view.amax(dim=(1, 2), keepdim=True) - low).clamp_min(1e-6)
        view = ((view - low) / span) ** float(rng.uniform(*cfg.gamma)) * span + low
    if rng.random() < cfg.p_blur:
        view = _gaussian_blur(view, float(rng.uniform(*cfg.blur_sigma)))
    return view


def cutmix_box(patch_size: Sequence[int], cfg: SemiSupervisedConfig, rng: np.random.Generator) -> np.ndarray:
    """A CutMix box, bool [Y, X], with probability p_cutmix (all False otherwise): area uniform in cutmix_area
    (fraction of the patch), aspect ratio uniform in cutmix_ratio, position uniform where it fits."""
    py, px = (int(p) for p in patch_size)
    box = np.zeros((py, px), dtype=bool)
    if rng.random() >= cfg.p_cutmix:
        return box
    area = rng.uniform(*cfg.cutmix_area) * py * px
    ratio = rng.uniform(*cfg.cutmix_ratio)
    h = int(np.clip(round(math.sqrt(area * ratio)), 1, py))
    w = int(np.clip(round(math.sqrt(area / ratio)), 1, px))
    y0, x0 = int(rng.integers(0, py - h + 1)), int(rng.integers(0, px - w + 1))
    box[y0:y0 + h, x0:x0 + w] = True
    return box
