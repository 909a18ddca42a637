"""Fine-tuning: pretrained encoder loading, k-patient draws, recipes/budgets, trainer base and variants.

Light imports only here; the nnU-Net trainer base lives in :mod:`nnunetv2_glrp.finetuning.trainer_base`.
"""

from __future__ import annotations

from nnunetv2_glrp.finetuning.patient_draw import PAPER_K_VALUES, draw_patients, select_cases
from nnunetv2_glrp.finetuning.recipes import (
    BUDGETS, CPU_BUDGET, FULL_BUDGET, NNUNET_RECIPE, PAPER_RECIPE, RECIPES,
    FineTuningBudget, FineTuningRecipe,
)

__all__ = [
    "PAPER_K_VALUES", "draw_patients", "select_cases", "BUDGETS", "CPU_BUDGET", "FULL_BUDGET",
    "NNUNET_RECIPE", "PAPER_RECIPE", "RECIPES", "FineTuningBudget", "FineTuningRecipe",
]
