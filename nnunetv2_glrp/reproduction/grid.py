"""What the run engine runs: the paper's tables, budgets, and the (method, k, fold, seed) grid.

Methods are the registry's (``registry.METHODS``; ``--methods``): each is one trainer family of
``trainers/``; ``nnU-Net`` is nnU-Net's own trainer from scratch (``NnunetControlTrainer<budget>``,
handed the k drawn patients as an extra fold, see ``runner``); ``GLRP+CRF`` is the paper's last stage:
the GRP-, LRP- and GLRP-pretrained models of the same (k, fold, seed) fused (mean of their
probabilities) and the paper's always-on 2D dense CRF (``predict --crf on``). Paper labels
(``GLRP-cl`` ...) are accepted too.

Trainer names: ``<Family>_k<K>[_<recipe>]<budget suffix>`` (``finetuning.variants.variant_name``), and
``NnunetControlTrainer<budget suffix>`` for the control row (no k, always nnU-Net's recipe). Budgets:
``full`` = the trainers without a budget suffix (the full length, for a GPU), ``cpu`` = the ``_cpu``
trainers (10 x 20 iterations, the ``cpu`` pretraining preset); any other name ``B`` means trainers
named ``..._B`` of one's own (the tests use ``tiny``). The recipe defaults to nnU-Net's own (no infix);
``--recipe paper`` selects the paper's fine-tuning hyperparameters (``_paper`` trainers).

Seeds: ``GLRP_SEED`` = seed draws the k patients and initialises the network (pretraining is
seeded by ``GLRP_PRETRAIN_SEED`` and shared by every seed). nnU-Net's output folder has no seed in
it, so each seed trains into its own nnU-Net results tree (:func:`results_root`): seed 0 into the
base tree itself (what ``nnUNetv2_train`` writes with ``GLRP_SEED`` unset, so one's own trainings
are reused), seed S > 0 into ``<base>/glrp_seed_S`` (a complete nnUNet_results tree:
``nnUNet_results=$nnUNet_results/glrp_seed_1 nnUNetv2_predict ...`` works on it), whose
``DatasetX/glrp_pretraining`` links to the one pretraining cache ``$nnUNet_results/DatasetX/glrp_pretraining``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from nnunetv2_glrp.finetuning.recipes import RECIPES, FineTuningBudget
from nnunetv2_glrp.finetuning.variants import variant_name
from nnunetv2_glrp.registry import CONTROL_FAMILY, METHODS, PAPER_K_VALUES, REFERENCE
from nnunetv2_glrp.reproduction import paper_values

@dataclass(frozen=True)
class Table:
    number: int
    title: str
    methods: tuple[str, ...]
    ks: tuple[int, ...]
    layout: str  # "dice_by_k" (Table 1) or "per_class" (Dice and HD per class)


TABLES: dict[int, Table] = {
    1: Table(1, "mean Dice by method and number of labeled patients k", ("Random", "SimCLR", "GCL", "PCL", "GLRP"),
             PAPER_K_VALUES, "dice_by_k"),
    3: Table(3, "per-class Dice and HD: the best baseline (PCL) against GLRP-cl", ("Random", "PCL", "GLRP"),
             (paper_values.ABLATION_K,), "per_class"),
    5: Table(5, "per-class Dice and HD: pretraining ablations",
             ("Random", "GLRPLinear", "GRP", "LRP", "GLRP"), (paper_values.ABLATION_K,), "per_class"),
    7: Table(7, "per-class Dice and HD: fusion of GRP + LRP + GLRP and the dense CRF",
             ("Random", "GLRP", "GLRP+CRF"), (paper_values.ABLATION_K,), "per_class"),
}


def resolve_methods(names: Sequence[str] | None, default: Sequence[str]) -> tuple[str, ...]:
    """Method names (ours or the paper's labels) in the given order, the reference (Random) always first."""
    by_label = {m.label.lower(): m.name for m in METHODS.values()}
    by_name = {m.lower(): m for m in METHODS}
    chosen = []
    for name in names or default:
        key = name.lower()
        found = by_name.get(key) or by_label.get(key)
        if found is None:
            raise ValueError(f"unknown method {name!r}; choose from {', '.join(METHODS)} "
                             f"(or the paper's labels {', '.join(m.label for m in METHODS.values())})")
        if found not in chosen:
            chosen.append(found)
    # every table compares each method with Random on the same draws: it is always run
    return (REFERENCE, *(m for m in chosen if m != REFERENCE))


def trainer_name(family: str, k: int, budget: str, recipe: str = "nnunet") -> str:
    """The trainer class name, spelled by the one function that names the generated variants
    (``finetuning.variants.variant_name``); the control family has no k and always nnU-Net's recipe."""
    b = FineTuningBudget(name=budget)
    if family == CONTROL_FAMILY:
        return family + b.suffix
    return variant_name(family, k, RECIPES[recipe], b)


@dataclass(frozen=True, order=True)
class Run:
    """One cell draw: a method at k labeled patients, one fold and one seed."""

    method: str
    k: int
    fold: int
    seed: int

    @property
    def tag(self) -> str:
        return f"{self.method.replace('+', '_')}__k{self.k}__fold{self.fold}__seed{self.seed}"

    @property
    def families(self) -> tuple[str, ...]:
        return METHODS[self.method].families

    def trainers(self, budget: str, recipe: str = "nnunet") -> tuple[str, ...]:
        return tuple(trainer_name(f, self.k, budget, recipe) for f in self.families)


def plan_runs(methods: Iterable[str], ks: Iterable[int], folds: Iterable[int], seeds: Iterable[int]) -> list[Run]:
    """Every (method, k, fold, seed), seed-major so that a partial run already has whole draws."""
    return [Run(m, k, f, s) for s in seeds for f in folds for k in ks for m in methods]


SEED_FOLDER = "glrp_seed_{seed}"


def results_root(seed: int, nnunet_results: str | os.PathLike | None = None) -> Path:
    """The nnUNet_results tree that trainings at ``GLRP_SEED=seed`` go to (see the module docstring)."""
    base = Path(nnunet_results if nnunet_results is not None else os.environ["nnUNet_results"])
    return base if seed == 0 else base / SEED_FOLDER.format(seed=seed)


def link_pretraining_cache(seed_root: Path, base: Path, dataset_name: str) -> None:
    """Make ``seed_root/<dataset>/glrp_pretraining`` the shared cache of ``base`` (pretraining paid once)."""
    if seed_root == base:
        return
    shared = base / dataset_name / "glrp_pretraining"
    shared.mkdir(parents=True, exist_ok=True)
    link = seed_root / dataset_name / "glrp_pretraining"
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() and link.resolve() == shared.resolve():
        return
    if link.exists() or link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a link to the shared pretraining cache {shared}: "
                              "move it away (its encoders would be used instead of the shared ones)")
    link.symlink_to(shared.resolve(), target_is_directory=True)
