"""The decoder-warm-up recipe (``_decwarm``): the encoder does not move while the decoder learns alone,
then trains at its own (lower) learning rate with a fresh optimizer state."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import torch

from nnunetv2_glrp.finetuning.optimization import build_optimizer
from nnunetv2_glrp.finetuning.recipes import (CPU_BUDGET, DECODER_WARMUP_RECIPE, NNUNET_RECIPE, FineTuningBudget,
                                              encoder_frozen_iterations, recipe_for_budget)
from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer


def _unet():
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    return PlainConvUNet(1, 3, (4, 8, 16), torch.nn.Conv2d, 3, (1, 2, 2), 2, 3, 2, conv_bias=True,
                         norm_op=torch.nn.InstanceNorm2d, norm_op_kwargs={"affine": True}, nonlin=torch.nn.LeakyReLU)


def test_parameter_groups_and_scaled_schedule():
    network = _unet()
    optimizer, scheduler = build_optimizer(network, NNUNET_RECIPE, 10)
    assert len(optimizer.param_groups) == 1  # nnU-Net's own single group, unchanged
    optimizer, scheduler = build_optimizer(network, DECODER_WARMUP_RECIPE, 10)
    encoder, decoder = optimizer.param_groups
    assert (encoder["name"], decoder["name"]) == ("encoder", "decoder")
    assert {id(p) for p in encoder["params"]} == {id(p) for p in network.encoder.parameters()}
    assert len(encoder["params"]) + len(decoder["params"]) == len(list(network.parameters()))
    for epoch in (0, 5):
        scheduler.step(epoch)
        poly = 1e-2 * (1 - epoch / 10) ** 0.9
        assert decoder["lr"] == torch.tensor(poly).item() or abs(decoder["lr"] - poly) < 1e-12
        assert abs(encoder["lr"] - 0.5 * poly) < 1e-12
    assert encoder_frozen_iterations(DECODER_WARMUP_RECIPE, 10, 20) == 20
    assert encoder_frozen_iterations(NNUNET_RECIPE, 10, 20) == 0
    assert recipe_for_budget(DECODER_WARMUP_RECIPE, CPU_BUDGET).optimizer == "adam"


class RandomDecoderWarmup(GLRPFineTuningTrainer):
    pretraining_method = None
    k_labeled = 2
    recipe = replace(DECODER_WARMUP_RECIPE, encoder_frozen_fraction=0.5)
    budget = FineTuningBudget(name="decwarmtest", num_epochs=2, iterations_per_epoch=2, val_iterations_per_epoch=1)


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The parameters (BatchNorm running statistics are buffers: they follow the data in train mode,
    frozen or not, as with requires_grad=False)."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_encoder_frozen_then_released(phantom_preprocessed):
    folder = Path(os.environ["nnUNet_preprocessed"]) / "Dataset901_ACDC"
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    plans["continue_training"] = False
    trainer = RandomDecoderWarmup(plans, phantom_preprocessed, 0, json.loads((folder / "dataset.json").read_text()),
                                  torch.device("cpu"))
    trainer.initialize()
    trainer.on_train_start()
    assert trainer._frozen_iterations == 2  # half of 2 x 2
    encoder, decoder = trainer.network.encoder, trainer.network.decoder
    enc0, dec0 = _snapshot(encoder), _snapshot(decoder)
    lrs, releases = [], []
    release = trainer._release_encoder

    def spy():  # count the encoder parameters with optimizer state around the release
        count = lambda: sum(p in trainer.optimizer.state for p in encoder.parameters())  # noqa: E731
        before = count()
        release()
        releases.append((trainer._global_iteration, before, count()))

    trainer._release_encoder = spy
    for epoch in range(2):
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        for _ in range(2):
            trainer.train_step(next(trainer.dataloader_train))
            lrs.append({g["name"]: g["lr"] for g in trainer.optimizer.param_groups})
            if trainer._global_iteration == 2:  # end of the decoder-only part
                enc1, dec1 = _snapshot(encoder), _snapshot(decoder)
    assert not _changed(enc0, enc1)  # the encoder did not move
    assert _changed(dec0, dec1)  # the decoder did
    n_encoder = len(list(encoder.parameters()))
    # momentum gathered from gradients the frozen encoder never applied is dropped at the release
    assert releases == [(2, n_encoder, 0)]
    assert _changed(enc1, _snapshot(encoder))  # released: it moves now
    assert [l["encoder"] for l in lrs[:2]] == [0.0, 0.0]
    assert all(abs(l["encoder"] - 0.5 * l["decoder"]) < 1e-12 for l in lrs[2:])
    setup = json.loads((Path(trainer.output_folder) / "glrp_finetuning.json").read_text())
    assert setup["encoder_frozen_iterations"] == 2 and setup["recipe"]["encoder_lr_factor"] == 0.5


def test_layer_decay_gives_each_encoder_stage_its_own_learning_rate():
    """decay 0.5 on a 3-stage encoder: stages 0, 1, 2 learn at 1/4, 1/2, 1 x the decoder's poly lr (times the
    encoder factor), every encoder parameter in exactly one stage group, and a step moves them accordingly."""
    from nnunetv2_glrp.finetuning.recipes import LAYER_DECAY_RECIPE

    network = _unet()
    recipe = replace(LAYER_DECAY_RECIPE, encoder_layer_decay=0.5, encoder_lr_factor=0.8, optimizer="sgd",
                     momentum=0.0, weight_decay=0.0)
    optimizer, scheduler = build_optimizer(network, recipe, 10)
    *stages, decoder = optimizer.param_groups
    assert [g["stage"] for g in stages] == [0, 1, 2] and decoder["name"] == "decoder"
    for s, group in enumerate(stages):
        assert {id(p) for p in group["params"]} == {id(p) for p in network.encoder.stages[s].parameters()}
    scheduler.step(3)
    poly = 1e-2 * (1 - 3 / 10) ** 0.9
    assert abs(decoder["lr"] - poly) < 1e-12
    for s, group in enumerate(stages):
        assert abs(group["lr"] - poly * 0.8 * 0.5 ** (2 - s)) < 1e-12
    # plain SGD: a parameter moves by lr x gradient, so equal gradients move stage 0 a quarter of stage 2
    first, last = stages[0]["params"][0], stages[2]["params"][0]
    before = [first.detach().clone(), last.detach().clone()]
    optimizer.zero_grad()
    (first.sum() + last.sum()).backward()
    optimizer.step()
    assert torch.allclose(before[0] - first.detach(), torch.full_like(first, poly * 0.8 * 0.25))
    assert torch.allclose(before[1] - last.detach(), torch.full_like(last, poly * 0.8))


def test_every_recipe_of_nnunets_runs_adam_at_the_cpu_budgets():
    """At a CPU budget the recipes made from nnU-Net's differ from it in their one change only (the budget's
    Adam 1e-3 reaches each); the paper's recipe keeps its own optimizer; cpulongsgd keeps nnU-Net's SGD."""
    from nnunetv2_glrp.finetuning.recipes import BUDGETS, PAPER_RECIPE, RECIPES

    for budget in ("cpu", "cpu500", "cpulong", "cpu2000"):
        for name, recipe in RECIPES.items():
            resolved = recipe_for_budget(recipe, BUDGETS[budget])
            if name == "paper":
                assert resolved == PAPER_RECIPE
            else:
                assert (resolved.optimizer, resolved.initial_lr) == ("adam", 1e-3)
                assert replace(resolved, optimizer="sgd", initial_lr=1e-2) == recipe
    assert all(recipe_for_budget(r, BUDGETS["cpulongsgd"]) == r for r in RECIPES.values())
