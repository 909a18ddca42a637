"""Projection heads must see what differs between images on InstanceNorm and BatchNorm encoders.

nnU-Net's own networks use InstanceNorm + LeakyReLU, the paper's BatchNorm + ReLU. InstanceNorm removes
each channel's mean per image, so an average-pooled stage output is nearly the same vector for every
image and the global loss cannot rank slices. The tests use a small encoder of each kind on synthetic
slices whose content encodes the position (a disk whose radius grows with it), and the paper's
pretraining optimizer (SGD lr 0.1, momentum 0.9).
"""

from __future__ import annotations

import math

import pytest
import torch
from dynamic_network_architectures.architectures.unet import PlainConvUNet

from nnunetv2_glrp.losses import global_relative_position_loss
from nnunetv2_glrp.models import encoder_features
from nnunetv2_glrp.models.heads import ProjectionHeads, pool_channel_statistics, pool_patch_statistics

FEATURES = (8, 16, 32, 64, 64)


def _encoder_network(norm: str) -> PlainConvUNet:
    instance = norm == "instance"
    return PlainConvUNet(1, len(FEATURES), FEATURES, torch.nn.Conv2d, 3, (1, 2, 2, 2, 2), 2, 3, 2,
                         conv_bias=instance,
                         norm_op=torch.nn.InstanceNorm2d if instance else torch.nn.BatchNorm2d,
                         norm_op_kwargs={"eps": 1e-5, "affine": True},
                         nonlin=torch.nn.LeakyReLU if instance else torch.nn.ReLU, nonlin_kwargs={"inplace": True})


def _slices(positions: torch.Tensor, gen: torch.Generator, size: int = 64) -> torch.Tensor:
    """[V, 1, size, size]: a bright disk of radius 5 + 18 x with a darker rim, jittered, plus noise."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    out = []
    for x in positions.tolist():
        cy, cx = (size / 2 + 6 * (torch.rand(2, generator=gen) - 0.5)).tolist()
        r = 5 + 18 * x
        dist2 = (yy - cy) ** 2 + (xx - cx) ** 2
        disk = (dist2 < r * r).float()
        rim = (dist2 < (r + 3) ** 2).float() - disk
        out.append(disk + 0.4 * rim + 0.1 * torch.randn(size, size, generator=gen))
    return torch.stack(out)[:, None]


def _relative_variation(features: torch.Tensor) -> float:
    """Mean over features of (std across images) / (mean magnitude across images)."""
    return (features.std(0) / features.abs().mean(0).clamp_min(1e-8)).mean().item()


def test_pooled_statistics_known_values():
    x = torch.tensor([[[[1.0, 3.0], [5.0, 7.0]]]])  # [1, 1, 2, 2]
    assert pool_channel_statistics(x)[0].tolist() == pytest.approx([4.0, math.sqrt(5.0), 7.0])
    assert pool_channel_statistics(x, "mean").tolist() == [[4.0]]
    feats = torch.arange(36.0).reshape(1, 1, 6, 6)  # 3 x 3 cells of 2 x 2, row-major
    cells = pool_patch_statistics(feats, grid=3)
    assert cells.shape == (9, 3)
    # cell 0 holds 0, 1, 6, 7; cell 8 holds 28, 29, 34, 35: population std sqrt(9.25) for both
    assert cells[0].tolist() == pytest.approx([3.5, math.sqrt(9.25), 7.0])
    assert cells[8].tolist() == pytest.approx([31.5, math.sqrt(9.25), 35.0])
    with pytest.raises(ValueError, match="head pooling"):
        pool_channel_statistics(x, "median")


def test_pooled_embedding_varies_across_images_on_both_norm_types():
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = _slices(torch.linspace(0, 1, 16), gen)
    variation = {}
    for norm in ("instance", "batch"):
        with torch.no_grad():
            bottleneck = _encoder_network(norm).encoder(x)[-1]
        c = bottleneck.shape[1]
        stats = pool_channel_statistics(bottleneck)
        variation[norm] = {"mean": _relative_variation(stats[:, :c]), "std": _relative_variation(stats[:, c:2 * c]),
                           "max": _relative_variation(stats[:, 2 * c:])}
    # InstanceNorm erases the per-image channel mean: the average pool alone barely changes between images
    assert variation["instance"]["mean"] < 0.1 < variation["batch"]["mean"]
    # what the heads read besides the mean varies on both
    for norm in ("instance", "batch"):
        assert max(variation[norm]["std"], variation[norm]["max"]) > 2 * variation["instance"]["mean"], variation


def test_pre_norm_tap_keeps_the_per_image_channel_means_instance_norm_erases():
    """The default tap (before the last norm of the stage) on InstanceNorm varies across images like a
    BatchNorm stage output does (measured 0.48 vs 0.06 after the norm, 0.37 for BatchNorm)."""
    torch.manual_seed(0)
    x = _slices(torch.linspace(0, 1, 16), torch.Generator().manual_seed(1))
    network = _encoder_network("instance")
    with torch.no_grad():
        after, before = (encoder_features(network, x, tap)[-1].mean(dim=(2, 3)) for tap in ("output", "pre-norm"))
    assert _relative_variation(after) < 0.1 < 0.3 < _relative_variation(before)


def _grp_losses(norm: str, pooling: str, steps: int = 40, n: int = 8, tap: str = "output") -> list[float]:
    torch.manual_seed(0)
    network = _encoder_network(norm)
    heads = ProjectionHeads(FEATURES, local_stage=2, hidden=64, out_dim=32, pooling=pooling)
    params = list(network.encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.SGD(params, 0.1, momentum=0.9, weight_decay=1e-4)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        positions = torch.rand(n, generator=gen).repeat(2)  # two views per slice
        z = heads.global_head(encoder_features(network, _slices(positions, gen), tap)[-1])
        loss = global_relative_position_loss(z, positions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize("tap", ["output", "pre-norm"])
@pytest.mark.parametrize("norm", ["instance", "batch"])
def test_grp_loss_falls_below_uniform_within_a_few_steps(norm, tap):
    """ln(2N - 1) is the loss of embeddings that cannot tell the slices apart."""
    losses = _grp_losses(norm, "mean-std-max", tap=tap)
    assert sum(losses[-5:]) / 5 < math.log(2 * 8 - 1) - 0.08, losses


def test_average_pool_head_stays_near_uniform_on_instance_norm():
    """The paper's head on nnU-Net's InstanceNorm encoder: what the default heads fix."""
    losses = _grp_losses("instance", "mean")
    assert sum(losses[-5:]) / 5 > math.log(2 * 8 - 1) - 0.08, losses
