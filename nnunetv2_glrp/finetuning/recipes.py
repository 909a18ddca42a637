"""Fine-tuning recipes (loss, optimizer, schedule) and budgets (epochs x iterations, pretraining preset).

A trainer is one recipe x one budget (x one pretraining method x one k). Names:
``<Method>Trainer[_k<K>][_paper|_decwarm|_semi|...][_cpu|...]``; no suffix = nnU-Net recipe, full budget.

Choices where the paper is silent:
* nnU-Net recipe: exactly nnU-Net's (Dice+CE loss with deep supervision, SGD with Nesterov, momentum
  0.99, lr 1e-2, weight decay 3e-5, poly schedule, nnU-Net augmentation), no warm-up, for every
  method, so that rows differ in their initialisation only and ``RandomInitTrainer`` is nnU-Net's
  own trainer (tests/test_nnunet_equivalence.py checks loss for loss). A linear warm-up
  (``warmup_fraction``) stays available for recipes that want one; it was the default (5 %) until it
  turned out to be the only thing that made the plugin's Random row differ from nnU-Net.
* paper recipe (``_paper``): the paper's fine-tuning recipe. Cross-entropy on the full-resolution output
  (no deep supervision: the paper's plain U-Net has one output), Adam lr 5e-4 without weight decay, cosine
  schedule to 0, batch 12, 200 epochs of one pass each over the labeled slices
  (``iterations_per_epoch=None``), nnU-Net augmentation.
* decwarm recipe (``_decwarm``): nnU-Net's recipe with a decoder-only warm-up (encoder frozen for the
  first 10 % of the iterations) and the encoder at half the learning rate afterwards, for methods
  whose encoder is pretrained (see ``DECODER_WARMUP_RECIPE``).
* Budgets: ``full`` keeps the recipe's length and pretrains with the "full" preset; ``cpu`` is
  sized for the demo on a 2-core CPU with the paper_unet_cpu plan (~0.8 s per iteration: 10 epochs x 20
  iterations + 3 validation iterations per epoch, ~3 min per run), pretrains with the "cpu" preset
  (1,500 iterations, 8-13 min, once per dataset and method: cached) and, because 200 SGD iterations
  at lr 1e-2 learn almost nothing, runs nnU-Net's recipe with Adam lr 1e-3 (see ``CPU_BUDGET``; the
  trainer records the recipe it ran in ``glrp_finetuning.json``).
  The tests define a smaller budget of their own (``tests/tiny_trainers``), shrinking the "cpu"
  pretraining with ``pretraining_overrides``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from nnunetv2_glrp.finetuning.semi_config import SemiSupervisedConfig


@dataclass(frozen=True)
class FineTuningRecipe:
    name: str
    loss: Literal["dice_ce", "ce"] = "dice_ce"
    optimizer: Literal["sgd", "adam"] = "sgd"
    initial_lr: float = 1e-2
    weight_decay: float = 3e-5
    momentum: float = 0.99
    schedule: Literal["poly", "cosine"] = "poly"
    warmup_fraction: float = 0.0
    #: share of all iterations during which the encoder does not move (decoder-only warm-up); the
    #: encoder's optimizer state starts fresh when it is released
    encoder_frozen_fraction: float = 0.0
    #: the encoder's learning rate relative to the decoder's, throughout (after the frozen part)
    encoder_lr_factor: float = 1.0
    #: layer-wise decay: encoder stage s of S (0 = the input side) learns at encoder_lr_factor x decay^(S-1-s)
    encoder_layer_decay: float = 1.0
    batch_size: int | None = None  # None: the plan's batch size
    deep_supervision: bool = True
    num_epochs: int = 1000
    iterations_per_epoch: int | None = 250  # None: one pass over the training slices
    val_iterations_per_epoch: int = 50
    #: semi-supervised part (``_semi``: unlabeled cine frames, weak-to-strong consistency); None: supervised only
    semi: SemiSupervisedConfig | None = None

    def __post_init__(self) -> None:
        if self.loss not in ("dice_ce", "ce"):
            raise ValueError(f"recipe {self.name}: unknown loss {self.loss!r}")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"recipe {self.name}: unknown optimizer {self.optimizer!r}")
        if self.schedule not in ("poly", "cosine"):
            raise ValueError(f"recipe {self.name}: unknown schedule {self.schedule!r}")
        if not 0.0 <= self.warmup_fraction < 1.0:
            raise ValueError(f"recipe {self.name}: warmup_fraction must lie in [0, 1)")
        if not 0.0 <= self.encoder_frozen_fraction < 1.0:
            raise ValueError(f"recipe {self.name}: encoder_frozen_fraction must lie in [0, 1)")
        if not self.encoder_lr_factor > 0:
            raise ValueError(f"recipe {self.name}: encoder_lr_factor must be positive")
        if not 0.0 < self.encoder_layer_decay <= 1.0:
            raise ValueError(f"recipe {self.name}: encoder_layer_decay must lie in (0, 1]")

    @property
    def splits_encoder(self) -> bool:
        """Whether the encoder needs its own optimizer parameter group."""
        return self.encoder_frozen_fraction > 0 or self.encoder_lr_factor != 1.0 or self.encoder_layer_decay != 1.0


@dataclass(frozen=True)
class FineTuningBudget:
    name: str  # "full", "cpu"; the trainer-name suffix unless "full"
    num_epochs: int | None = None  # None: the recipe's
    iterations_per_epoch: int | None = None
    val_iterations_per_epoch: int | None = None
    pretraining_preset: Literal["full", "cpu"] = "full"
    pretraining_overrides: tuple[tuple[str, object], ...] = ()
    #: (recipe name, ((field, value), ...)): recipe fields this budget changes, per recipe
    recipe_overrides: tuple[tuple[str, tuple[tuple[str, object], ...]], ...] = ()
    #: epochs between nnU-Net's ``checkpoint_latest.pth`` saves (its ``save_every``); None: nnU-Net's 50. The long
    #: CPU budgets save every 10 epochs (200 iterations, a few minutes), so that a killed run loses at most that
    #: much: with 50 a 50-epoch run saves only its final checkpoint and a killed one starts again from nothing
    checkpoint_every: int | None = None

    @property
    def suffix(self) -> str:
        return "" if self.name == "full" else f"_{self.name}"


NNUNET_RECIPE = FineTuningRecipe(name="nnunet")
#: the paper's fine-tuning recipe (``_paper`` trainers). The one thing still named "paper": the plans overlays of
#: that name are now paper_unet and paper_unet_cpu, the pretraining preset and the reproduce budget full.
PAPER_RECIPE = FineTuningRecipe(
    name="paper", loss="ce", optimizer="adam", initial_lr=5e-4, weight_decay=0.0, momentum=0.0,
    schedule="cosine", warmup_fraction=0.0, batch_size=12, deep_supervision=False,
    num_epochs=200, iterations_per_epoch=None, val_iterations_per_epoch=50,
)
#: nnU-Net's recipe that protects a pretrained encoder: the decoder learns alone for the first 10 % of
#: the iterations (the fresh decoder's large early gradients never reach the encoder), then the
#: whole network trains with the encoder at half the learning rate. Values from common fine-tuning
#: practice (linear probing then fine-tuning). Measured (README, "Few-label benchmark"): worse than the
#: default at every draw from a 300-iteration encoder; from the cpu preset's encoder 3 of 6 draws better,
#: so the default stays nnU-Net's recipe.
DECODER_WARMUP_RECIPE = replace(NNUNET_RECIPE, name="decwarm", encoder_frozen_fraction=0.1, encoder_lr_factor=0.5)
# Candidates of the real-data study of what keeps a pretrained encoder's features (docs/budget_study.md), each
# nnU-Net's recipe with one change: the decoder first learns alone for a quarter of the iterations, then all at
# one learning rate (linear probing then fine-tuning, Kumar et al. 2022, with the decoder as the probe);
ENCODER_FIRST_FROZEN_RECIPE = replace(NNUNET_RECIPE, name="lpft", encoder_frozen_fraction=0.25)
# the encoder at a tenth of the learning rate throughout;
ENCODER_LOW_LR_RECIPE = replace(NNUNET_RECIPE, name="enclr", encoder_lr_factor=0.1)
# layer-wise learning-rate decay 0.7 per encoder stage from the bottleneck down to the input (as in BEiT/ViT
# fine-tuning, whose 0.65-0.75 it takes): the generic first stages move least.
LAYER_DECAY_RECIPE = replace(NNUNET_RECIPE, name="lld", encoder_layer_decay=0.7)
# nnU-Net's recipe plus weak-to-strong consistency on the unlabeled cine frames (after UniMatch; ``_semi``
# trainers, finetuning.semi_trainer): the supervised part is exactly nnU-Net's, the unlabeled loss is added.
SEMI_RECIPE = replace(NNUNET_RECIPE, name="semi", semi=SemiSupervisedConfig())
RECIPES: dict[str, FineTuningRecipe] = {r.name: r for r in (
    NNUNET_RECIPE, PAPER_RECIPE, DECODER_WARMUP_RECIPE, ENCODER_FIRST_FROZEN_RECIPE, ENCODER_LOW_LR_RECIPE,
    LAYER_DECAY_RECIPE, SEMI_RECIPE)}

FULL_BUDGET = FineTuningBudget(name="full", pretraining_preset="full")
# 200 iterations: with nnU-Net's SGD (lr 1e-2, poly) RandomInitTrainer_k2 reached a validation Dice of
# only 0.11 on the 20-patient demo phantom, with Adam lr 1e-3 (same loss, schedule and augmentation)
# 0.90, both in ~190 s on the 2-core CPU; so the cpu budget switches nnU-Net's recipe to Adam 1e-3
# (the paper's fine-tuning recipe already uses Adam and keeps its own settings); so does every recipe made from
# nnU-Net's (decwarm and the study's candidates), so that at one budget the recipes differ in one thing only.
ADAM_1E3 = (("optimizer", "adam"), ("initial_lr", 1e-3))
NNUNET_DERIVED = tuple(name for name, r in RECIPES.items() if r.optimizer == NNUNET_RECIPE.optimizer)
CPU_BUDGET = FineTuningBudget(
    name="cpu", num_epochs=10, iterations_per_epoch=20, val_iterations_per_epoch=3, pretraining_preset="cpu",
    recipe_overrides=tuple((name, ADAM_1E3) for name in NNUNET_DERIVED),
)


#: epochs (of 20 iterations) between the resumable checkpoints of the study budgets' runs
STUDY_CHECKPOINT_EVERY = 10


def cpu_study_budget(name: str, num_epochs: int, optimizer: str = "adam") -> FineTuningBudget:
    """A CPU budget of the real-data budget study (docs/budget_study.md): the ``cpu`` budget's epochs of 20
    iterations (3 validation iterations each) and ``cpu`` pretraining preset, ``num_epochs`` epochs, a resumable
    checkpoint every 10 epochs, and nnU-Net's recipe with Adam 1e-3 (as ``cpu``) or with nnU-Net's own SGD (lr 1e-2, poly) unchanged."""
    overrides = CPU_BUDGET.recipe_overrides if optimizer == "adam" else ()
    return replace(CPU_BUDGET, name=name, num_epochs=num_epochs, recipe_overrides=overrides,
                   checkpoint_every=STUDY_CHECKPOINT_EVERY)


# The budget study on real ACDC (docs/budget_study.md): 200 (cpu), 500, 1,000 and 2,000 iterations with
# Adam 1e-3, and 1,000 with nnU-Net's SGD. ``cpulong`` (1,000 iterations) is the comparison budget.
CPU500_BUDGET = cpu_study_budget("cpu500", 25)
CPULONG_BUDGET = cpu_study_budget("cpulong", 50)
CPU2000_BUDGET = cpu_study_budget("cpu2000", 100)
CPULONG_SGD_BUDGET = cpu_study_budget("cpulongsgd", 50, optimizer="sgd")
BUDGETS: dict[str, FineTuningBudget] = {
    b.name: b for b in (FULL_BUDGET, CPU_BUDGET, CPU500_BUDGET, CPULONG_BUDGET, CPU2000_BUDGET, CPULONG_SGD_BUDGET)}


def recipe_for_budget(recipe: FineTuningRecipe, budget: FineTuningBudget) -> FineTuningRecipe:
    """The recipe with the budget's overrides for it applied (unchanged when it names none)."""
    for name, fields in budget.recipe_overrides:
        if name == recipe.name:
            return replace(recipe, **dict(fields))
    return recipe


@dataclass(frozen=True)
class ResolvedSchedule:
    """Epochs and iterations a run actually uses (budget over recipe)."""

    num_epochs: int
    iterations_per_epoch: int | None
    val_iterations_per_epoch: int

    @classmethod
    def of(cls, recipe: FineTuningRecipe, budget: FineTuningBudget) -> "ResolvedSchedule":
        pick = lambda b, r: r if b is None else b  # noqa: E731
        return cls(
            num_epochs=pick(budget.num_epochs, recipe.num_epochs),
            iterations_per_epoch=pick(budget.iterations_per_epoch, recipe.iterations_per_epoch),
            val_iterations_per_epoch=pick(budget.val_iterations_per_epoch, recipe.val_iterations_per_epoch),
        )


def encoder_frozen_iterations(recipe: FineTuningRecipe, num_epochs: int, iterations_per_epoch: int) -> int:
    """Number of first iterations in which the encoder does not move (0 when the recipe freezes nothing)."""
    if recipe.encoder_frozen_fraction <= 0:
        return 0
    return max(1, int(round(recipe.encoder_frozen_fraction * num_epochs * iterations_per_epoch)))


def warmup_iterations(recipe: FineTuningRecipe, num_epochs: int, iterations_per_epoch: int) -> int:
    """Number of linear warm-up iterations: ``warmup_fraction`` of all, at least 1 when enabled."""
    if recipe.warmup_fraction <= 0:
        return 0
    return max(1, int(round(recipe.warmup_fraction * num_epochs * iterations_per_epoch)))
