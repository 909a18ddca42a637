"""Test-only trainers ``<Method>[_k<K>][_<recipe>]_tiny`` and ``NnunetControlTrainer_tiny``: 1 epoch x 2
iterations after a shrunk "cpu" pretraining; ``..._short``: 3 epochs x 10 iterations with the cpu budget's
Adam 1e-3 after the same shrunk pretraining, long enough for a from-scratch model to learn the phantom's
heart (the demo test holds its Dice to a floor).

Not shipped: ``tests/conftest.py`` appends this folder to ``nnUNet_extTrainer`` (after the
repository's ``trainers/``), so nnU-Net's lookup, ``nnUNetv2_train`` and ``nnUNetv2_predict`` find
them in the test session (benchmarks/bench_finetuning.py does the same). The families are the
registry's, as in ``trainers/``; only the budget differs.
"""

from __future__ import annotations

from nnunetv2_glrp.finetuning.recipes import FineTuningBudget
from nnunetv2_glrp.finetuning.variants import family_trainers

#: Pretraining overrides of the tiny budget; keys are fields of the pretraining config.
TINY_PRETRAINING_OVERRIDES: tuple[tuple[str, object], ...] = (("epochs", 1), ("iterations_per_epoch", 2), ("batch_size", 4))
TINY_BUDGET = FineTuningBudget(
    name="tiny", num_epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1,
    pretraining_preset="cpu", pretraining_overrides=TINY_PRETRAINING_OVERRIDES,
)

SHORT_BUDGET = FineTuningBudget(
    name="short", num_epochs=4, iterations_per_epoch=30, val_iterations_per_epoch=1, pretraining_preset="cpu",
    pretraining_overrides=TINY_PRETRAINING_OVERRIDES,
    recipe_overrides=(("nnunet", (("optimizer", "adam"), ("initial_lr", 1e-2))),),
)

globals().update(family_trainers(__name__, budgets=(TINY_BUDGET, SHORT_BUDGET), include_bases=False))
