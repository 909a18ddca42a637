"""Patch grid, receptive-field boxes, SSIM and the patch-similarity matrix (PSM) of LRP."""

from __future__ import annotations

from .patch_similarity import canonical_patches, patch_ssim_matrix
from .patches import (
    CENTRE,
    CORNER,
    EDGE,
    canonical_rotation,
    feature_map_size,
    feature_patch_boxes,
    grid_boxes,
    patch_view_index,
    pool_feature_patches,
    position_class,
    receptive_field_boxes,
)
from .ssim import gaussian_window, pairwise_ssim, ssim

__all__ = [
    "CENTRE",
    "CORNER",
    "EDGE",
    "canonical_patches",
    "canonical_rotation",
    "feature_map_size",
    "feature_patch_boxes",
    "gaussian_window",
    "grid_boxes",
    "pairwise_ssim",
    "patch_ssim_matrix",
    "patch_view_index",
    "pool_feature_patches",
    "position_class",
    "receptive_field_boxes",
    "ssim",
]
