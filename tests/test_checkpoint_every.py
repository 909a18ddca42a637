"""The budgets' resumable checkpoints (``FineTuningBudget.checkpoint_every`` -> nnU-Net's ``save_every``).

nnU-Net writes ``checkpoint_latest.pth`` every ``save_every`` (50) epochs and never at the last epoch, so a
50-epoch run (``cpulong``) killed at any point had nothing to resume from. These tests run nnU-Net's own
training loop (``run_training``) in-process on the session phantom, 3 epochs x 1 iteration, record every
checkpoint the loop writes, kill a run right after its second checkpoint and resume it as ``nnUNetv2_train --c``
does.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from nnunetv2_glrp.finetuning.nnunet_control import NnunetControlTrainer
from nnunetv2_glrp.finetuning.recipes import BUDGETS, CPULONG_BUDGET, NNUNET_RECIPE, FineTuningBudget
from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer
from nnunetv2_glrp.reproduction.training import epochs_done_fraction

EPOCHS = 3
EVERY_EPOCH = FineTuningBudget(name="ckpttest", num_epochs=EPOCHS, iterations_per_epoch=1, val_iterations_per_epoch=1,
                               checkpoint_every=1)
NNUNET_DEFAULT = replace(EVERY_EPOCH, name="ckpttestdefault", checkpoint_every=None)


class Killed(RuntimeError):
    pass


def _no_final_validation(self, *args, **kwargs):
    """nnU-Net's end-of-training prediction of the validation cases: not what these tests look at."""


def _trainer_class(kind: str, budget: FineTuningBudget) -> type:
    name = f"{kind}_{budget.name}"
    skip = {"perform_actual_validation": _no_final_validation}
    if kind == "control":
        return type(name, (NnunetControlTrainer,), {"budget": budget, **skip})
    return type(name, (GLRPFineTuningTrainer,), {"pretraining_method": None, "k_labeled": 2, "recipe": NNUNET_RECIPE,
                                                 "budget": budget, **skip})


def _new_trainer(cls: type, config: str, saves: list, kill_after: int | None = None):
    base = Path(os.environ["nnUNet_preprocessed"]) / "Dataset901_ACDC"
    plans = json.loads((base / "nnUNetPlans.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False  # what nnUNetv2_train adds before building a trainer
    dataset_json = json.loads((base / "dataset.json").read_text(encoding="utf-8"))
    trainer = cls(plans, config, 0, dataset_json, torch.device("cpu"))
    save = trainer.save_checkpoint

    def recording_save(filename: str) -> None:
        save(filename)
        name = Path(filename).name
        if name != "checkpoint_best.pth":  # written whenever the EMA pseudo Dice improves: not the point here
            saves.append((trainer.current_epoch, name))
            if kill_after is not None and len(saves) == kill_after:
                raise Killed(filename)

    trainer.save_checkpoint = recording_save
    return trainer


@pytest.mark.parametrize("kind", ["control", "plugin"])
def test_a_run_saves_every_budgeted_epoch_and_a_killed_run_resumes_from_there(kind, phantom_preprocessed):
    cls = _trainer_class(kind, EVERY_EPOCH)
    saves: list = []
    trainer = _new_trainer(cls, phantom_preprocessed, saves, kill_after=2)
    with pytest.raises(Killed):
        trainer.run_training()
    assert saves == [(0, "checkpoint_latest.pth"), (1, "checkpoint_latest.pth")]
    latest = Path(trainer.output_folder) / "checkpoint_latest.pth"
    assert torch.load(latest, map_location="cpu", weights_only=False)["current_epoch"] == 2  # the next epoch to run
    # the run engine's time estimate reads the same: 2 of 3 epochs done (and a resumed run's record says so)
    assert epochs_done_fraction(latest.parent) == pytest.approx(2 / EPOCHS)

    resumed_saves: list = []
    resumed = _new_trainer(cls, phantom_preprocessed, resumed_saves)
    resumed.load_checkpoint(os.fspath(latest))  # what nnUNetv2_train --c does
    resumed.run_training()
    # only the last epoch ran again, and the final epoch writes the final checkpoint, not a latest one
    assert resumed_saves == [(2, "checkpoint_final.pth")]
    assert not latest.exists()  # nnU-Net removes it once the final checkpoint is written
    assert epochs_done_fraction(latest.parent) == 0.0  # finished: nothing left to resume


def test_without_checkpoint_every_nnunets_50_epochs_apply(phantom_preprocessed):
    saves: list = []
    _new_trainer(_trainer_class("control", NNUNET_DEFAULT), phantom_preprocessed, saves).run_training()
    assert saves == [(2, "checkpoint_final.pth")]


def test_the_long_study_budgets_checkpoint_every_ten_epochs():
    """cpulong has 50 epochs: with nnU-Net's save_every of 50 its runs had no intermediate checkpoint at all."""
    assert CPULONG_BUDGET.num_epochs == 50 and CPULONG_BUDGET.checkpoint_every == 10
    for name in ("cpu500", "cpulong", "cpu2000", "cpulongsgd"):
        budget = BUDGETS[name]
        assert budget.checkpoint_every is not None and budget.checkpoint_every < budget.num_epochs, name
