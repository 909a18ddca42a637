"""Encoder feature taps: one feature map per encoder stage, and stage geometry.

``network.encoder(x)`` of dynamic_network_architectures' U-Nets returns the list of every stage's
output (``return_skips=True``, which the U-Nets set for their decoder); the last entry is the
bottleneck. The stage the LRP (local) loss taps is chosen by feature-map size, computed from the plans'
strides (the GRP loss always taps the bottleneck).

Two places to tap (``FEATURE_TAPS``): ``"output"``, the stage outputs (after norm and nonlinearity),
or ``"pre-norm"``, the output of each stage's last convolution, before its normalisation. nnU-Net's
networks normalise with InstanceNorm, which gives every channel of every image the same spatial mean
and spread (its affine parameters); on nnU-Net's 4 x 4 bottleneck of a 128 px patch that leaves 16
values per channel, normalised per image, for the global head to tell slices apart. Before the norm
the per-image channel statistics are still there. The pretraining default is ``"pre-norm"`` (see
``PretrainingConfig.feature_tap``); gradients reach the conv and everything below it, the last norm's
affine parameters only get gradients in fine-tuning.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


#: where :func:`encoder_features` taps each stage
FEATURE_TAPS = ("pre-norm", "output")


def last_convolution(stage: nn.Module) -> nn.Module:
    """The last convolution module of an encoder stage (the one its norm and nonlinearity follow)."""
    convs = [m for m in stage.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    if not convs:
        raise ValueError(f"encoder stage {type(stage).__name__} has no convolution to tap before its norm")
    return convs[-1]


def encoder_features(network: nn.Module, x: torch.Tensor, tap: str = "output") -> list[torch.Tensor]:
    """One feature map per encoder stage for images ``x`` [B, C, H, W] (shallowest first, bottleneck last):
    the stage outputs (``tap="output"``) or the outputs of each stage's last convolution, before its
    normalisation (``tap="pre-norm"``). Same shapes either way."""
    if tap not in FEATURE_TAPS:
        raise ValueError(f"unknown feature tap {tap!r}; choose one of {FEATURE_TAPS}")
    captured: dict[int, torch.Tensor] = {}
    handles = []
    if tap == "pre-norm":
        for i, stage in enumerate(network.encoder.stages):
            handles.append(last_convolution(stage).register_forward_hook(
                lambda module, inputs, output, i=i: captured.__setitem__(i, output)))
    try:
        feats = network.encoder(x)
    finally:
        for handle in handles:
            handle.remove()
    if isinstance(feats, torch.Tensor):
        raise ValueError("network.encoder returned a single tensor; set encoder.return_skips=True "
                         "to tap every stage")
    return [captured[i] for i in range(len(feats))] if tap == "pre-norm" else list(feats)


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
