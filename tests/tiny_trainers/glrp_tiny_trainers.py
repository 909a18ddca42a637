"""Test-only trainers ``<Method>[_k<K>][_paper]_tiny``: 1 epoch x 2 iterations after a shrunk "cpu" pretraining.

Not shipped: ``tests/conftest.py`` appends this folder to ``nnUNet_extTrainer`` (after the
repository's ``trainers/``), so nnU-Net's lookup, ``nnUNetv2_train`` and ``nnUNetv2_predict`` find
them in the test session (benchmarks/bench_finetuning.py does the same). The bases mirror the eight
shipped methods of ``trainers/glrp_trainers.py``; only the budget differs.
"""

from __future__ import annotations

from nnunetv2_glrp.finetuning.recipes import FineTuningBudget
from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer
from nnunetv2_glrp.finetuning.variants import generate_variants

#: Pretraining overrides of the tiny budget; keys are fields of the pretraining config.
TINY_PRETRAINING_OVERRIDES: tuple[tuple[str, object], ...] = (("epochs", 1), ("iterations_per_epoch", 2), ("batch_size", 4))
TINY_BUDGET = FineTuningBudget(
    name="tiny", num_epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1,
    pretraining_preset="cpu", pretraining_overrides=TINY_PRETRAINING_OVERRIDES,
)

#: class name of each shipped method -> its pretraining method (None: random initialisation)
METHODS = {"GLRPTrainer": "GLRP", "GRPTrainer": "GRP", "LRPTrainer": "LRP", "GLRPLinearTrainer": "GLRPLinear",
           "RandomInitTrainer": None, "SimCLRTrainer": "SimCLR", "GCLTrainer": "GCL", "PCLTrainer": "PCL"}

for _name, _method in METHODS.items():
    _base = type(_name, (GLRPFineTuningTrainer,), {"pretraining_method": _method, "__module__": __name__})
    globals().update(generate_variants(_base, __name__, budgets=(TINY_BUDGET,)))
del _name, _method, _base
