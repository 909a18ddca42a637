"""SSIM and the patch-similarity matrix (PSM) of LRP (the patch grid itself: ``nnunetv2_glrp.patch_grid``)."""

from __future__ import annotations

from .patch_similarity import canonical_patches, patch_ssim_matrix
from .ssim import gaussian_window, pairwise_ssim

__all__ = ["canonical_patches", "gaussian_window", "pairwise_ssim", "patch_ssim_matrix"]
