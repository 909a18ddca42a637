"""Projection heads of GLRP pretraining, kept OUTSIDE nnU-Net's network object.

Global head (GRP): the bottleneck is pooled per channel into three statistics (mean, standard
deviation, maximum over the spatial positions), batch-normalised, then Linear -> ReLU -> Linear ->
512-d. Local head (LRP): the chosen stage's feature map is cut into the g x g grid (3 x 3 by default) of
``nnunetv2_glrp.patch_grid`` (the same cells the PSM is computed on), each cell is pooled
into the same three statistics, then the same BatchNorm -> MLP (shared over the 9 patches) gives a
512-d vector per patch.

Why not the paper's plain average pool: nnU-Net's own architecture normalises with InstanceNorm,
which removes each channel's mean per image. Average-pooling an InstanceNorm stage output (after the
affine and LeakyReLU) gives nearly the same vector for every image (measured on the CPU-sized nnU-Net
2d network: across-image std of the pooled features 0.06 of their mean magnitude, 0.48 with
BatchNorm), so the global loss cannot rank slices and stays at ln(2N - 1). Standard deviation and
maximum are what InstanceNorm leaves per image (the spread and the peaks of a channel); with
BatchNorm networks they add information too. Pretraining also feeds the heads each stage's features
before its last norm (``PretrainingConfig.feature_tap="pre-norm"``, ``models/taps.py``), where the
per-image channel means are still there; the heads themselves do not care which tap they get. The
BatchNorm1d in front of the MLP rescales the three statistics, whose across-image variation is small
next to their mean, so the MLP sees them at unit scale (as SimCLR's projection head normalises its
hidden layer). Pooling is rotation invariant, as
the patch comparison needs. Tests: tests/test_projection_heads.py (embeddings vary across images and
the GRP loss falls below ln(2N - 1) within a few steps, for InstanceNorm/LeakyReLU and
BatchNorm/ReLU encoders). ``pooling="mean"`` (``PretrainingConfig.head_pooling``) keeps the
paper's head. Where the paper is silent we chose: hidden width = 512 for both heads.

The heads live in their own ``nn.Module`` so that ``network.state_dict()`` never contains them and
nnU-Net's strict inference-time loading of the network is unaffected.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from nnunetv2_glrp.patch_grid import feature_patch_boxes

#: head pooling choices: "mean-std-max" (default, see above) or "mean" (the paper's head: average
#: pool -> Linear -> ReLU -> Linear, no normalisation; for reproducing it on BatchNorm networks)
HEAD_POOLINGS = ("mean-std-max", "mean")


def pool_channel_statistics(x: torch.Tensor, pooling: str = "mean-std-max") -> torch.Tensor:
    """[B, C, *spatial] -> [B, 3C] (per channel the spatial mean, population std and max) or, for
    ``pooling="mean"``, [B, C] (the spatial mean)."""
    flat = torch.flatten(x, 2)
    if pooling == "mean":
        return flat.mean(dim=2)
    if pooling != "mean-std-max":
        raise ValueError(f"unknown head pooling {pooling!r}; choose one of {HEAD_POOLINGS}")
    return torch.cat([flat.mean(dim=2), flat.std(dim=2, unbiased=False), flat.amax(dim=2)], dim=1)


def pool_patch_statistics(features: torch.Tensor, grid: int = 3, pooling: str = "mean-std-max") -> torch.Tensor:
    """[V, C, h, w] -> [V * grid**2, 3C or C]: :func:`pool_channel_statistics` of each grid cell, in
    the view-major, row-major patch order of the PSM."""
    if features.ndim != 4:
        raise ValueError(f"local head expects 2D feature maps [V, C, h, w], got shape {tuple(features.shape)}")
    boxes = feature_patch_boxes(features.shape[-2:], grid)
    pooled = [pool_channel_statistics(features[:, :, y0:y1, x0:x1], pooling) for y0, y1, x0, x1 in boxes]
    return torch.stack(pooled, dim=1).reshape(-1, pooled[0].shape[1])


def _mlp(in_channels: int, hidden: int, out: int, pooling: str) -> nn.Sequential:
    if pooling not in HEAD_POOLINGS:
        raise ValueError(f"unknown head pooling {pooling!r}; choose one of {HEAD_POOLINGS}")
    if pooling == "mean":
        return nn.Sequential(nn.Linear(in_channels, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))
    n = 3 * in_channels
    return nn.Sequential(nn.BatchNorm1d(n), nn.Linear(n, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out))


class GlobalProjectionHead(nn.Module):
    """[B, C, *spatial] bottleneck -> [B, out_dim]."""

    def __init__(self, in_channels: int, hidden: int = 512, out_dim: int = 512, pooling: str = "mean-std-max"):
        super().__init__()
        self.pooling = pooling
        self.mlp = _mlp(in_channels, hidden, out_dim, pooling)

    def forward(self, x: torch.Tensor, gather=None) -> torch.Tensor:
        pooled = pool_channel_statistics(x, self.pooling)
        return self.mlp(pooled if gather is None else gather(pooled))


class LocalProjectionHead(nn.Module):
    """[B, C, H, W] stage features -> [B * grid^2, out_dim] patch embeddings (patch = b * grid^2 + cell)."""

    def __init__(self, in_channels: int, hidden: int = 512, out_dim: int = 512, grid: int = 3,
                 pooling: str = "mean-std-max"):
        super().__init__()
        self.grid, self.pooling = grid, pooling
        self.mlp = _mlp(in_channels, hidden, out_dim, pooling)

    def forward(self, x: torch.Tensor, gather=None) -> torch.Tensor:
        pooled = pool_patch_statistics(x, self.grid, self.pooling)
        return self.mlp(pooled if gather is None else gather(pooled))


class ProjectionHeads(nn.Module):
    """Both heads; ``forward(features)`` takes the encoder's stage list and returns (z_global, z_local)
    (None for a head switched off: a method without that loss term does not pay for it).

    ``gather`` (distributed pretraining, ``pretraining.distributed.RankGroup.gather``): applied to the pooled
    statistics of the local shard before the MLP, so the heads (their BatchNorm1d included) run on the global batch
    on every rank and return its embeddings."""

    def __init__(self, features_per_stage: Sequence[int], local_stage: int, hidden: int = 512,
                 out_dim: int = 512, grid: int = 3, pooling: str = "mean-std-max"):
        super().__init__()
        n = len(features_per_stage)
        if not -n <= local_stage < n:
            raise ValueError(f"local_stage {local_stage} out of range for an encoder with {n} stages")
        self.local_stage = local_stage % n
        self.global_head = GlobalProjectionHead(int(features_per_stage[-1]), hidden, out_dim, pooling)
        self.local_head = LocalProjectionHead(int(features_per_stage[self.local_stage]), hidden, out_dim, grid, pooling)

    def forward(self, features: Sequence[torch.Tensor], use_global: bool = True,
                use_local: bool = True, gather=None) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        z_global = self.global_head(features[-1], gather) if use_global else None
        z_local = self.local_head(features[self.local_stage], gather) if use_local else None
        return z_global, z_local
