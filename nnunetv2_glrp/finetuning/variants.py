"""Trainer classes from the registry: ``<Family>[_k<K>][_<recipe>][_<budget>]`` for every k, recipe and budget.

Classes are made with ``type()`` and put into the calling module's namespace by ``trainers/``
(:func:`family_trainers`); their ``__module__`` is that module, so nnU-Net's name lookup
(``hasattr(module, name)``) finds them like hand-written classes. ``nnUNetv2_glrp trainers`` lists them
(:func:`shipped_trainer_names`) from the registry and the name grammar alone: the listing never imports
``trainers/`` (which imports this package: no cycle).
"""

from __future__ import annotations

from typing import Iterable

from nnunetv2_glrp.finetuning.recipes import BUDGETS, NNUNET_RECIPE, RECIPES, FineTuningBudget, FineTuningRecipe
from nnunetv2_glrp.registry import CONTROL_FAMILY, PAPER_K_VALUES, TRAINER_FAMILIES


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
                bases = (base,)
                if recipe.semi is not None:  # the unlabeled step (imported here: the listing never needs torch)
                    from nnunetv2_glrp.finetuning.semi_trainer import SemiSupervisedTrainerMixin
                    bases = (SemiSupervisedTrainerMixin, base)
                out[name] = type(name, bases, {
                    "k_labeled": k, "recipe": recipe, "budget": budget,
                    "__module__": module, "__qualname__": name, "__doc__": doc,
                })
    return out


def family_trainers(module: str, budgets: Iterable[FineTuningBudget] = tuple(BUDGETS.values()),
                    include_bases: bool = True) -> dict[str, type]:
    """{name: class} of every trainer of the registry's families and of the control family, for ``trainers/``
    (``include_bases`` also defines the hand-written base names, e.g. ``GLRPTrainer``) or for a budget of
    one's own (the tests' ``tiny``: only the variants at that budget). Same order as :func:`trainer_names`."""
    from nnunetv2_glrp.finetuning.nnunet_control import NnunetControlTrainer
    from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer

    budgets = tuple(budgets)
    out: dict[str, type] = {}
    for family in TRAINER_FAMILIES.values():
        base = type(family.name, (GLRPFineTuningTrainer,), {
            "pretraining_method": family.pretraining, "__module__": module, "__qualname__": family.name,
            "__doc__": family.description})
        if include_bases:
            out[family.name] = base
        out.update(generate_variants(base, module, budgets=budgets))
    for budget in budgets:
        name = CONTROL_FAMILY + budget.suffix
        if name == CONTROL_FAMILY:  # the full-budget control is NnunetControlTrainer itself (nnUNetTrainer)
            out[name] = NnunetControlTrainer
        else:
            out[name] = type(name, (NnunetControlTrainer,), {
                "budget": budget, "__module__": module, "__qualname__": name,
                "__doc__": f"nnU-Net's nnUNetTrainer at the {budget.name} budget; no k-patient draw (generated)."})
    return out


def trainer_names(budgets: Iterable[FineTuningBudget] = tuple(BUDGETS.values()), include_bases: bool = True,
                  k_values: Iterable[int | None] = (None, *PAPER_K_VALUES),
                  recipes: Iterable[FineTuningRecipe] = tuple(RECIPES.values())) -> list[str]:
    """Every trainer name :func:`family_trainers` defines, computed from the registry and the name grammar
    alone (nothing is imported or executed): each family, then its variants, then the control trainers."""
    budgets, k_values, recipes = tuple(budgets), tuple(k_values), tuple(recipes)
    names: list[str] = []
    for family in TRAINER_FAMILIES:
        names += [family] if include_bases else []
        names += [n for k in k_values for r in recipes for b in budgets
                  if (n := variant_name(family, k, r, b)) != family]
    return names + [CONTROL_FAMILY + b.suffix for b in budgets]


def shipped_trainer_names() -> list[str]:
    """Every trainer class of the repository's ``trainers/`` folder (the folder ``nnUNet_extTrainer`` points
    nnU-Net's lookup at): :func:`trainer_names` at the shipped budgets."""
    return trainer_names()
