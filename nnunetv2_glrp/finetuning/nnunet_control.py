"""nnU-Net's own trainer at one of the plugin's budgets: the control row of the few-label benchmark.

``NnunetControlTrainer`` is ``nnUNetTrainer`` with only what a budget must change: the number of
epochs and iterations, where the budget overrides nnU-Net's recipe (the ``cpu`` budget runs Adam
1e-3, see ``recipes.CPU_BUDGET``) the optimizer, and the seed: like the plugin's trainers it seeds its
initial weights with ``GLRP_SEED`` (see ``seeding``), where nnU-Net would start every run from torch's
default seed. With the same seed and the same k patients its network starts from the same weights as
``RandomInitTrainer``'s. Everything else (split handling, data loading,
augmentation, network, loss, training step) is nnU-Net's code, untouched; it draws no k patients, so
the run engine hands it the k drawn patients as an extra fold of ``splits_final.json``
(:func:`write_control_folds`). At the full budget it is exactly ``nnUNetTrainer``. Like the plugin's
trainers it records its setup (seed, budget, the recipe it ran, its training cases) in
``glrp_finetuning.json``, which the engine checks before it reuses a finished model.
``tests/test_nnunet_equivalence.py`` shows that the plugin's ``RandomInitTrainer`` follows
``nnUNetTrainer`` loss for loss; this class lets the engine check the same thing end to end, through an
independent code path for the k-patient split (the end-to-end tests find both rows equal, case for case).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar, Iterable

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.finetuning.optimization import build_optimizer
from nnunetv2_glrp.dataset_split import read_cases_table
from nnunetv2_glrp.finetuning.patient_draw import select_cases
from nnunetv2_glrp.finetuning.seeding import env_seed, seed_everything
from nnunetv2_glrp.registry import SETUP_FILE
from nnunetv2_glrp.finetuning.recipes import (FULL_BUDGET, NNUNET_RECIPE, FineTuningBudget, ResolvedSchedule,
                                              recipe_for_budget)


class NnunetControlTrainer(nnUNetTrainer):
    budget: ClassVar[FineTuningBudget] = FULL_BUDGET  # trainers/ sets CPU_BUDGET for the _cpu class

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # nnU-Net records these names: no *args
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.control_recipe = recipe_for_budget(NNUNET_RECIPE, self.budget)
        schedule = ResolvedSchedule.of(self.control_recipe, self.budget)
        self.num_epochs = schedule.num_epochs
        self.num_iterations_per_epoch = schedule.iterations_per_epoch or self.num_iterations_per_epoch
        self.num_val_iterations_per_epoch = schedule.val_iterations_per_epoch
        self.initial_lr = self.control_recipe.initial_lr
        if self.budget.checkpoint_every is not None:  # nnU-Net's save_every: how often a run can resume
            self.save_every = self.budget.checkpoint_every

    def initialize(self):
        if not self.was_initialized:
            seed_everything(env_seed("GLRP_SEED"))
        super().initialize()

    def configure_optimizers(self):
        return build_optimizer(self.network, self.control_recipe, self.num_epochs)

    def on_train_start(self):
        super().on_train_start()
        if self.local_rank == 0:
            tr_keys, val_keys = self.do_split()
            atomic_write_json(Path(self.output_folder) / SETUP_FILE, {
                "trainer": type(self).__name__, "control": "nnU-Net's nnUNetTrainer, only the budget applied",
                "pretraining_method": None, "pretrained_encoder": None, "k_labeled": None, "fold": self.fold,
                "seed": env_seed("GLRP_SEED"), "training_cases": list(tr_keys), "validation_cases": list(val_keys),
                "recipe": asdict(self.control_recipe), "budget": asdict(self.budget), "num_epochs": self.num_epochs,
                "num_iterations_per_epoch": self.num_iterations_per_epoch,
                "num_val_iterations_per_epoch": self.num_val_iterations_per_epoch, "batch_size": self.batch_size,
            }, default=str)


#: first fold index of the control folds, right after nnU-Net's own 5 folds (0-4), which stay as they are
CONTROL_FOLD_BASE = 5


def write_control_folds(preprocessed_dataset_folder: str | os.PathLike, ks: Iterable[int],
                        seeds: Iterable[int], fold: int = 0) -> dict[tuple[int, int], int]:
    """Append one fold per (k, seed) to ``splits_final.json`` for :class:`NnunetControlTrainer`.

    Fold ``CONTROL_FOLD_BASE + i`` (i-th (k, seed) pair) trains on the cases of the k patients that
    the plugin's trainers draw at ``GLRP_SEED=seed`` from ``fold`` (same function, same draw) and validates on ``fold``'s
    validation cases. A control fold already in the file with the same cases keeps its index (so the
    index of a (k, seed) does not depend on which others a later call asks for, and finished
    trainings are found again); new ones are appended. nnU-Net's folds 0-4 are never touched.
    Returns {(k, seed): fold index}."""
    folder = Path(preprocessed_dataset_folder)
    splits = json.loads((folder / "splits_final.json").read_text(encoding="utf-8"))
    base = splits[fold]
    table = read_cases_table(folder)
    folds: dict[tuple[int, int], int] = {}
    for k, seed in ((k, s) for k in ks for s in seeds):
        _, cases = select_cases(base["train"], k, fold, seed, table)
        entry = {"train": cases, "val": list(base["val"])}
        known = [i for i in range(CONTROL_FOLD_BASE, len(splits)) if splits[i] == entry]
        if not known:
            splits.append(entry)
        folds[(k, seed)] = known[0] if known else len(splits) - 1
    atomic_write_json(folder / "splits_final.json", splits)
    return folds
