"""Augmentation that turns one slice into one view (applied twice per slice for the two views).

The paper lists random rotation, flip, elastic deformation and scaling. We use the transforms nnU-Net
2.8 trains with (batchgeneratorsv2 ``SpatialTransform`` + ``MirrorTransform``). Where the paper is
silent we chose: rotation uniform in [-pi, pi] with p = 0.5, isotropic scaling in [0.7, 1.4] with
p = 0.5 (nnU-Net's range), elastic deformation with p = 0.2 (nnU-Net's default magnitudes), mirroring of
both in-plane axes with p = 0.5 each. The view is the centre of the slice at the configuration's patch
size (zero-padded when the slice is smaller): short-axis slices are centred on the heart, so both views
keep the same anatomy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class ViewAugmentation:
    p_rotation: float = 0.5
    rotation: tuple[float, float] = (-math.pi, math.pi)
    p_scaling: float = 0.5
    scaling: tuple[float, float] = (0.7, 1.4)
    p_elastic: float = 0.2
    mirror_axes: tuple[int, ...] = (0, 1)


def build_view_transform(patch_size: Sequence[int], aug: ViewAugmentation = ViewAugmentation()):
    """A batchgeneratorsv2 transform: ``t(image=[C, H, W] tensor)['image']`` -> [C, *patch_size]."""
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
    from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

    transforms = [SpatialTransform(tuple(int(p) for p in patch_size), patch_center_dist_from_border=0,
                                   random_crop=False, p_elastic_deform=aug.p_elastic, p_rotation=aug.p_rotation,
                                   rotation=tuple(aug.rotation), p_scaling=aug.p_scaling, scaling=tuple(aug.scaling),
                                   p_synchronize_scaling_across_axes=1)]
    if aug.mirror_axes:
        transforms.append(MirrorTransform(allowed_axes=tuple(aug.mirror_axes)))
    return ComposeTransforms(transforms)
