"""Projection heads of GLRP pretraining, kept OUTSIDE nnU-Net's network object.

Global head (GRP): adaptive average pool of the bottleneck -> Linear -> ReLU -> Linear -> 512-d, as the
paper specifies. Local head (LRP): the chosen stage's feature map is cut into the 3 x 3 grid of
``nnunetv2_glrp.patch_grid`` (the same cells the PSM is computed on), each cell is average-pooled, then the same
Linear -> ReLU -> Linear MLP (shared over the 9 patches) gives a 512-d vector per patch. Where the paper
is silent we chose: hidden width = 512 for both heads, no normalisation layer in the heads (the loss
uses cosine similarity, which normalises), pooling before the MLP rather than 1x1 convolutions (the
two are equivalent up to the order of the linear layer and the mean; pooling first is cheaper).

The heads live in their own ``nn.Module`` so that ``network.state_dict()`` never contains them and
nnU-Net's strict inference-time loading of the network is unaffected.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nnunetv2_glrp.patch_grid import pool_feature_patches


def _mlp(in_features: int, hidden: int, out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class GlobalProjectionHead(nn.Module):
    """[B, C, *spatial] bottleneck -> [B, out_dim]."""

    def __init__(self, in_channels: int, hidden: int = 512, out_dim: int = 512):
        super().__init__()
        self.mlp = _mlp(in_channels, hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.flatten(x, 2).mean(dim=2))


class LocalProjectionHead(nn.Module):
    """[B, C, H, W] stage features -> [B * grid^2, out_dim] patch embeddings (patch = b * grid^2 + cell)."""

    def __init__(self, in_channels: int, hidden: int = 512, out_dim: int = 512, grid: int = 3):
        super().__init__()
        self.grid = grid
        self.mlp = _mlp(in_channels, hidden, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4:
            raise ValueError(f"local head expects 2D feature maps [B, C, H, W], got shape {tuple(x.shape)}")
        return self.mlp(pool_feature_patches(x, self.grid))


class ProjectionHeads(nn.Module):
    """Both heads; ``forward(features)`` takes the encoder's stage list and returns (z_global, z_local)
    (None for a head switched off: a method without that loss term does not pay for it)."""

    def __init__(self, features_per_stage: Sequence[int], local_stage: int, hidden: int = 512,
                 out_dim: int = 512, grid: int = 3):
        super().__init__()
        n = len(features_per_stage)
        if not -n <= local_stage < n:
            raise ValueError(f"local_stage {local_stage} out of range for an encoder with {n} stages")
        self.local_stage = local_stage % n
        self.global_head = GlobalProjectionHead(int(features_per_stage[-1]), hidden, out_dim)
        self.local_head = LocalProjectionHead(int(features_per_stage[self.local_stage]), hidden, out_dim, grid)

    def forward(self, features: Sequence[torch.Tensor], use_global: bool = True,
                use_local: bool = True) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        z_global = self.global_head(features[-1]) if use_global else None
        z_local = self.local_head(features[self.local_stage]) if use_local else None
        return z_global, z_local
