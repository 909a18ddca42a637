"""Generated trainer variants: ``<Base>[_k<K>][_paper][_cpu]`` for every k, recipe and budget.

Classes are made with ``type()`` and put into the calling module's namespace by ``trainers/``; their
``__module__`` is that module, so nnU-Net's name lookup (``hasattr(module, name)``) finds them like
hand-written classes.
"""

from __future__ import annotations

from typing import Iterable

from nnunetv2_glrp.finetuning.patient_draw import PAPER_K_VALUES
from nnunetv2_glrp.finetuning.recipes import BUDGETS, NNUNET_RECIPE, RECIPES, FineTuningBudget, FineTuningRecipe


def variant_name(base_name: str, k: int | None, recipe: FineTuningRecipe, budget: FineTuningBudget) -> str:
    name = base_name
    if k is not None:
        name += f"_k{k}"
    if recipe.name != NNUNET_RECIPE.name:
        name += f"_{recipe.name}"
    return name + budget.suffix


def generate_variants(
    base: type,
    module: str,
    k_values: Iterable[int | None] = (None, *PAPER_K_VALUES),
    recipes: Iterable[FineTuningRecipe] = tuple(RECIPES.values()),
    budgets: Iterable[FineTuningBudget] = tuple(BUDGETS.values()),
) -> dict[str, type]:
    """{name: class} for every (k, recipe, budget) except the base's own combination."""
    out: dict[str, type] = {}
    for k in k_values:
        for recipe in recipes:
            for budget in budgets:
                name = variant_name(base.__name__, k, recipe, budget)
                if name == base.__name__:
                    continue
                doc = (f"{base.__name__} fine-tuned on k={k if k is not None else 'all'} labeled patients, "
                       f"{recipe.name} recipe, {budget.name} budget (generated).")
                out[name] = type(name, (base,), {
                    "k_labeled": k, "recipe": recipe, "budget": budget,
                    "__module__": module, "__qualname__": name, "__doc__": doc,
                })
    return out
