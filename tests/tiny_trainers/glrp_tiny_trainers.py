"""Test-only trainers ``<Method>[_k<K>][_<recipe>]_tiny`` and ``NnunetControlTrainer_tiny``: 1 epoch x 2
iterations after a shrunk "cpu" pretraining (``nnUNetTrainer_tiny``: nnU-Net's plain trainer, 1 x 2); ``..._short``: 3 epochs x 25 iterations with Adam 1e-2 after the
same shrunk pretraining, long enough for a from-scratch model on ``tests/plans/nnunet_test.json`` to learn the
easy phantom's heart (measured: validation Dice 0.62 after 4 x 30; the demo test holds the test Dice to a floor).

nnU-Net's end-of-training validation (predicting every validation case, then a spawned export pool: about
15 s a training here) runs only where a test asks for it with ``GLRP_TEST_FINAL_VALIDATION=1``; conftest
sets 0 for the session. The trainers are otherwise the shipped ones.

Not shipped: ``tests/conftest.py`` appends this folder to ``nnUNet_extTrainer`` (after the
repository's ``trainers/``), so nnU-Net's lookup, ``nnUNetv2_train`` and ``nnUNetv2_predict`` find
them in the test session (benchmarks/bench_finetuning.py does the same). The families are the
registry's, as in ``trainers/``; only the budget differs.
"""

from __future__ import annotations

import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_glrp.finetuning.recipes import FineTuningBudget
from nnunetv2_glrp.finetuning.variants import family_trainers

#: Pretraining overrides of the tiny budget; keys are fields of the pretraining config.
TINY_PRETRAINING_OVERRIDES: tuple[tuple[str, object], ...] = (("epochs", 1), ("iterations_per_epoch", 2), ("batch_size", 4))
TINY_BUDGET = FineTuningBudget(
    name="tiny", num_epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1,
    pretraining_preset="cpu", pretraining_overrides=TINY_PRETRAINING_OVERRIDES,
)

SHORT_BUDGET = FineTuningBudget(
    name="short", num_epochs=3, iterations_per_epoch=25, val_iterations_per_epoch=1, pretraining_preset="cpu",
    pretraining_overrides=TINY_PRETRAINING_OVERRIDES,
    recipe_overrides=(("nnunet", (("optimizer", "adam"), ("initial_lr", 1e-2))),),
)



def _final_validation(self, *args, **kwargs):
    """nnU-Net's own ``perform_actual_validation``, unless the test session switched it off."""
    if os.environ.get("GLRP_TEST_FINAL_VALIDATION", "1") == "0":
        self.print_to_log_file("tests: nnU-Net's final validation skipped (GLRP_TEST_FINAL_VALIDATION=0)")
        return
    return nnUNetTrainer.perform_actual_validation(self, *args, **kwargs)


class nnUNetTrainer_tiny(nnUNetTrainer):
    """nnU-Net's own trainer, unchanged but for the tiny budget (1 epoch x 2 iterations): for the
    ``nnUNetv2_train ... -pretrained_weights`` test of ``export-pretrained``."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # nnU-Net records these by name
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 1
        self.num_iterations_per_epoch = 2
        self.num_val_iterations_per_epoch = 1

    perform_actual_validation = _final_validation


_classes = family_trainers(__name__, budgets=(TINY_BUDGET, SHORT_BUDGET), include_bases=False)
for _cls in _classes.values():
    _cls.perform_actual_validation = _final_validation
globals().update(_classes)
del _cls
