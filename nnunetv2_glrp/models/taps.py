"""Encoder feature taps: the list of stage outputs of an nnU-Net encoder, and stage geometry.

``network.encoder(x)`` of dynamic_network_architectures' U-Nets returns the list of every stage's
output (``return_skips=True``, which the U-Nets set for their decoder); the last entry is the
bottleneck. The stage the LRP (local) loss taps is chosen by feature-map size, computed from the plans'
strides (the GRP loss always taps the bottleneck).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


def encoder_features(network: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """All encoder stage outputs for images ``x`` [B, C, H, W] (shallowest first, bottleneck last)."""
    feats = network.encoder(x)
    if isinstance(feats, torch.Tensor):
        raise ValueError("network.encoder returned a single tensor; set encoder.return_skips=True "
                         "to tap every stage")
    return list(feats)


def stage_feature_sizes(patch_size: Sequence[int], strides: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """Spatial size of every encoder stage output for an input of ``patch_size``: ceil(size / stride) per
    stage, what a strided convolution with padding kernel // 2 gives (equal to floor division for the
    sizes nnU-Net plans, which are divisible by the total stride)."""
    size = np.array(patch_size, dtype=int)
    out = []
    for s in strides:
        s = np.broadcast_to(np.array(s, dtype=int), size.shape)
        size = -(-size // s)  # ceil, conv with padding k//2 and stride s
        out.append(tuple(int(v) for v in size))
    return out


def default_local_stage(patch_size: Sequence[int], strides: Sequence[Sequence[int]], grid: int = 3) -> int:
    """The deepest stage whose feature map is at least ``3 * grid`` cells per side (9 x 9 for the 3 x 3
    patch grid), so that each of the grid x grid patches pools at least 3 x 3 feature cells."""
    sizes = stage_feature_sizes(patch_size, strides)
    ok = [i for i, s in enumerate(sizes) if min(s) >= 3 * grid]
    if not ok:
        raise ValueError(f"no encoder stage has a feature map of at least {3 * grid} px per side for patch size "
                         f"{tuple(patch_size)} (stage sizes {sizes})")
    return ok[-1]
