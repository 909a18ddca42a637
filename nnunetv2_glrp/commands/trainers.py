"""``nnUNetv2_glrp trainers``: every trainer name ``nnUNetv2_train -tr`` accepts from this package."""

from __future__ import annotations

from nnunetv2_glrp.finetuning.recipes import BUDGETS, NNUNET_RECIPE, RECIPES
from nnunetv2_glrp.registry import CONTROL_FAMILY

USES_NNUNET_FOLDERS = False  # the CLI creates no ./nnunet_data for this command
HELP = "list every GLRP fine-tuning trainer (hand-written and generated) for nnUNetv2_train -tr NAME"


def grammar() -> str:
    """The name grammar, spelled from the recipes and budgets that exist."""
    recipes = "|".join(f"_{r}" for r in RECIPES if r != NNUNET_RECIPE.name)
    budgets = "|".join(b.suffix for b in BUDGETS.values() if b.suffix)
    return (f"<Method>Trainer[_k<K>][{recipes}][{budgets}] and {CONTROL_FAMILY}[{budgets}] (nnU-Net's own trainer "
            "at a budget)")


def configure(parser) -> None:
    parser.description = (f"{HELP}. Names: {grammar()}, e.g. GLRPTrainer_k6, GRPTrainer_k2_paper, "
                          "GLRPTrainer_k6_decwarm_cpu, RandomInitTrainer_k2_cpu; see trainers/glrp_trainers.py.")


def run(args) -> int:
    from nnunetv2_glrp.finetuning.variants import shipped_trainer_names

    for name in shipped_trainer_names():
        print(name)
    return 0
