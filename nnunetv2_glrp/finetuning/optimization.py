"""Optimizer, lr schedule and loss of a fine-tuning recipe (the nnU-Net parts stay nnU-Net's own)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nnunetv2_glrp.finetuning.encoder_loading import unwrap_network
from nnunetv2_glrp.finetuning.recipes import FineTuningRecipe
from nnunetv2_glrp.finetuning.schedules import CosineLRScheduler


class GroupFactorScheduler:
    """An epoch-level scheduler that then scales each parameter group by its ``lr_factor``.

    nnU-Net's schedulers set one lr for every group; the encoder group of a recipe with
    ``encoder_lr_factor`` gets that lr times the factor. Same ``step(epoch)`` interface."""

    def __init__(self, scheduler, optimizer: torch.optim.Optimizer):
        self.scheduler, self.optimizer = scheduler, optimizer

    def step(self, current_step: int | None = None) -> None:
        self.scheduler.step(current_step)
        for group in self.optimizer.param_groups:
            group["lr"] *= group.get("lr_factor", 1.0)

    def state_dict(self) -> dict:
        return self.scheduler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.scheduler.load_state_dict(state)


def encoder_stage_groups(encoder: nn.Module, recipe: FineTuningRecipe) -> list[dict]:
    """The encoder's parameter groups (all named "encoder"): one with ``encoder_lr_factor``, or with a layer
    decay one per stage of ``encoder.stages`` (dynamic_network_architectures' encoders), stage s of S at
    ``encoder_lr_factor * decay ** (S - 1 - s)``; parameters outside the stages go with stage 0."""
    params = list(encoder.parameters())
    stages = getattr(encoder, "stages", None)
    if recipe.encoder_layer_decay == 1.0 or stages is None:
        return [{"params": params, "name": "encoder", "lr_factor": recipe.encoder_lr_factor}]
    per_stage = [list(stage.parameters()) for stage in stages]
    in_stages = {id(p) for ps in per_stage for p in ps}
    per_stage[0] = [p for p in params if id(p) not in in_stages] + per_stage[0]
    n = len(per_stage)
    return [{"params": ps, "name": "encoder", "stage": s,
             "lr_factor": recipe.encoder_lr_factor * recipe.encoder_layer_decay ** (n - 1 - s)}
            for s, ps in enumerate(per_stage) if ps]


def parameter_groups(network: nn.Module, recipe: FineTuningRecipe) -> list:
    """nnU-Net's single group, or [encoder group(s) (``lr_factor``), rest] when the recipe treats the encoder apart."""
    if not recipe.splits_encoder:
        return list(network.parameters())
    encoder = encoder_stage_groups(unwrap_network(network).encoder, recipe)
    ids = {id(p) for group in encoder for p in group["params"]}
    rest = [p for p in network.parameters() if id(p) not in ids]
    return [*encoder, {"params": rest, "name": "decoder", "lr_factor": 1.0}]


def build_optimizer(network: nn.Module, recipe: FineTuningRecipe, num_epochs: int):
    """(optimizer, epoch-level lr scheduler with nnU-Net's ``step(epoch)`` interface)."""
    from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

    params = parameter_groups(network, recipe)
    if recipe.optimizer == "sgd":
        optimizer = torch.optim.SGD(params, recipe.initial_lr, weight_decay=recipe.weight_decay,
                                    momentum=recipe.momentum, nesterov=recipe.momentum > 0)
    else:
        optimizer = torch.optim.Adam(params, recipe.initial_lr, weight_decay=recipe.weight_decay)
    if recipe.schedule == "poly":
        scheduler = PolyLRScheduler(optimizer, recipe.initial_lr, num_epochs)
    else:
        scheduler = CosineLRScheduler(optimizer, recipe.initial_lr, num_epochs)
    return optimizer, (GroupFactorScheduler(scheduler, optimizer) if recipe.splits_encoder else scheduler)


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
