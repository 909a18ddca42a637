"""Generated trainer variants: ``<Base>[_k<K>][_paper|_decwarm][_cpu]`` for every k, recipe and budget.

Classes are made with ``type()`` and put into the calling module's namespace by ``trainers/``; their
``__module__`` is that module, so nnU-Net's name lookup (``hasattr(module, name)``) finds them like
hand-written classes. ``nnUNetv2_glrp trainers`` lists them all (:func:`shipped_trainer_names`).
"""

from __future__ import annotations

import importlib.util
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


def shipped_trainer_names() -> list[str]:
    """Every trainer class defined in a module of the repository's ``trainers/`` folder (the folder that
    ``nnUNet_extTrainer`` points nnU-Net's lookup at), grouped by module and in definition order: each
    hand-written method first, then its generated variants."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunetv2_glrp.environment import trainers_folder

    names: list[str] = []
    for path in sorted(trainers_folder().glob("*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        classes = [v for v in vars(module).values()
                   if isinstance(v, type) and issubclass(v, nnUNetTrainer) and v.__module__ == path.stem]
        hand_written = [c for c in classes if not any(b in classes for b in c.__bases__)]
        grouped = [c for base in hand_written for c in [base, *(v for v in classes if base in v.__bases__)]]
        names += [c.__name__ for c in grouped] + [c.__name__ for c in classes if c not in grouped]
    return names
