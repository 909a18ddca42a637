"""Optimizer, lr schedule and loss of a fine-tuning recipe (the nnU-Net parts stay nnU-Net's own)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnunetv2_glrp.finetuning.recipes import FineTuningRecipe
from nnunetv2_glrp.finetuning.schedules import CosineLRScheduler


def build_optimizer(network: nn.Module, recipe: FineTuningRecipe, num_epochs: int):
    """(optimizer, epoch-level lr scheduler with nnU-Net's ``step(epoch)`` interface)."""
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

    params = network.parameters()
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, recipe.initial_lr, weight_decay=recipe.weight_decay,
                                    momentum=recipe.momentum, nesterov=recipe.momentum > 0)
    else:
        optimizer = torch.optim.Adam(params, recipe.initial_lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == "poly":
        scheduler = PolyLRScheduler(optimizer, recipe.initial_lr, num_epochs)
    else:
        scheduler = CosineLRScheduler(optimizer, recipe.initial_lr, num_epochs)
    return optimizer, scheduler


def build_cross_entropy_loss(ignore_label: int | None, deep_supervision_scales: list | None,
                             ddp_without_compile: bool = False) -> nn.Module:
    """nnU-Net's RobustCrossEntropyLoss, wrapped for deep supervision with nnU-Net's weights when used."""
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

    loss = RobustCrossEntropyLoss(ignore_index=ignore_label if ignore_label is not None else -100)
    if deep_supervision_scales is None:
        return loss
    weights = np.array([1 / (2 ** i) for i in range(len(deep_supervision_scales))])
    weights[-1] = 1e-6 if ddp_without_compile else 0
    return DeepSupervisionWrapper(loss, weights / weights.sum())
