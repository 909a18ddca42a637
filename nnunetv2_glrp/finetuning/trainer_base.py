"""The fine-tuning trainer every class in ``trainers/`` derives from.

One nnU-Net trainer, configured by four class attributes: ``pretraining_method`` (``"GLRP"``,
``"GRP"``, ``"LRP"``, ``"GLRPLinear"``, the baselines ``"SimCLR"``, ``"GCL"``, ``"PCL"``, or None for
random initialisation), ``k_labeled`` (None =
all training patients of the fold), ``recipe`` and ``budget``. Hooks into nnU-Net 2.8.1's loop:

* ``initialize``: ensures the pretraining cache (every rank; see pretrained_source), THEN seeds
  torch/numpy/random with ``GLRP_SEED`` right before nnU-Net builds the network, so the fresh decoder
  is the same for every method at one seed whether or not pretraining ran in this process.
* ``configure_optimizers``: nnU-Net calls it right after building (and compiling) the network and
  before wrapping it in DDP, so the pretrained encoder is loaded there, into the unwrapped module,
  on every rank; then the recipe's optimizer/schedule are built.
* ``do_split``: writes a patient-level ``splits_final.json`` from ``glrp_split.json`` when it is
  missing (rank 0; nnU-Net would write a per-case one), refuses a fold with a patient on both sides
  (e.g. a hand-made file, or a fold beyond the file: nnU-Net's random per-case 80:20), then keeps
  the k drawn patients (ED and ES) of the fold's training cases; validation stays the fold's whole
  validation set; the draw is written to ``k_patients.json``.
* ``train_step``: the recipe's linear lr warm-up and decoder-only warm-up (the encoder group's lr is
  0 for the first ``encoder_frozen_fraction`` of the iterations; its optimizer state is then reset).
  lr 0 rather than ``requires_grad=False`` keeps DDP's gradient hooks valid.
Inference (``nnUNetv2_predict -tr``) only calls the inherited ``build_network_architecture``: it
never needs the pretraining cache or the projection heads.
Environment: ``GLRP_SEED`` (k-patient draw and fine-tuning init, default 0), ``GLRP_PRETRAIN_SEED``
(pretraining, default 0), ``GLRP_PRETRAINED_ENCODER`` (a ``pretrained_encoder.pth`` to start from instead
of the budget's pretraining preset), ``GLRP_EXTRA_POOLS`` and ``GLRP_PRETRAIN_EPOCHS`` (see pretrained_source).
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict
from pathlib import Path
from typing import ClassVar

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.dataset_split import read_cases_table
from nnunetv2_glrp.finetuning.encoder_loading import load_encoder_state
from nnunetv2_glrp.finetuning.optimization import build_cross_entropy_loss, build_optimizer
from nnunetv2_glrp.finetuning.patient_draw import (
    check_patient_level_split, count_patients, ensure_patient_level_splits, select_cases,
    write_selection,
)
from nnunetv2_glrp.finetuning.pretrained_source import (
    describe_pretraining, epochs_used, obtain_pretrained_encoder, pools_used, pretraining_overrides,
)
from nnunetv2_glrp.finetuning.recipes import (
    FULL_BUDGET, NNUNET_RECIPE, FineTuningBudget, FineTuningRecipe, ResolvedSchedule, encoder_frozen_iterations,
    recipe_for_budget, warmup_iterations,
)
from nnunetv2_glrp.finetuning.schedules import warmup_factor
from nnunetv2_glrp.finetuning.seeding import env_seed, seed_everything
from nnunetv2_glrp.pretraining import load_pretrained_encoder_state
from nnunetv2_glrp.registry import SETUP_FILE

SELECTION_FILE = "k_patients.json"


class GLRPFineTuningTrainer(nnUNetTrainer):
    pretraining_method: ClassVar[str | None] = "GLRP"
    k_labeled: ClassVar[int | None] = None
    recipe: ClassVar[FineTuningRecipe] = NNUNET_RECIPE
    budget: ClassVar[FineTuningBudget] = FULL_BUDGET

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.recipe = recipe_for_budget(type(self).recipe, self.budget)  # what this run uses
        if self.recipe.semi is not None and not getattr(self, "semi_supervised", False):
            raise ValueError(f"{type(self).__name__}: recipe {self.recipe.name} is semi-supervised; derive the trainer "
                             "from finetuning.semi_trainer.SemiSupervisedTrainerMixin")
        schedule = ResolvedSchedule.of(self.recipe, self.budget)
        self.num_epochs = schedule.num_epochs
        self.one_pass_per_epoch = schedule.iterations_per_epoch is None
        self.num_iterations_per_epoch = schedule.iterations_per_epoch or 250  # counted in initialize
        self.num_val_iterations_per_epoch = schedule.val_iterations_per_epoch
        self.initial_lr = self.recipe.initial_lr
        if self.budget.checkpoint_every is not None:  # nnU-Net's save_every: how often a run can resume
            self.save_every = self.budget.checkpoint_every
        self.weight_decay = self.recipe.weight_decay
        self.enable_deep_supervision = self.recipe.deep_supervision
        if self.recipe.batch_size is not None:  # private deep copy of the plan's configuration
            self.configuration_manager.configuration["batch_size"] = self.recipe.batch_size
        self.seed = env_seed("GLRP_SEED")
        self.pretraining_seed = env_seed("GLRP_PRETRAIN_SEED")
        self.pretrained_encoder_path: Path | None = None
        self.pretrained_encoder_source: str | None = None
        self.extra_pools: tuple[str, ...] = ()  # the datasets whose frames the pretraining added
        self.pretraining_epochs: int | None = None  # $GLRP_PRETRAIN_EPOCHS (None: the preset's, or a named encoder)
        self.loaded_encoder_tensors = 0
        self.selected_patients: list[str] | None = None
        self._global_iteration = 0
        self._epoch_lrs: list[float] = []
        self._warmup_iterations = 0
        self._frozen_iterations = 0

    # ---- pretrained encoder -------------------------------------------------------------------
    def initialize(self):
        if not self.was_initialized:
            if self.pretraining_method is not None:
                overrides = pretraining_overrides(dict(self.budget.pretraining_overrides))
                self.print_to_log_file(describe_pretraining(self.pretraining_method, self.budget.pretraining_preset,
                                                            self.pretraining_seed, overrides))
                self.pretrained_encoder_path, self.pretrained_encoder_source = obtain_pretrained_encoder(
                    self.plans_manager.dataset_name, self.configuration_name, self.pretraining_method,
                    self.plans_manager.plans_name, self.budget.pretraining_preset, self.device,
                    self.pretraining_seed, overrides,
                )
                self.extra_pools = pools_used(self.plans_manager.dataset_name)
                self.pretraining_epochs = epochs_used()
            # seeded after (maybe) pretraining in this process, right before the network is built
            seed_everything(self.seed)
        super().initialize()
        if self.one_pass_per_epoch:
            self.num_iterations_per_epoch = self._one_pass_iterations()
            self.print_to_log_file(f"GLRP: one epoch = one pass = {self.num_iterations_per_epoch} iterations")

    def configure_optimizers(self):
        if self.pretrained_encoder_path is not None:
            state = load_pretrained_encoder_state(self.pretrained_encoder_path)
            self.loaded_encoder_tensors = load_encoder_state(self.network, state, os.fspath(self.pretrained_encoder_path))
            self.print_to_log_file(
                f"GLRP: loaded {self.loaded_encoder_tensors} pretrained encoder tensors ({self.pretraining_method}) "
                f"from {self.pretrained_encoder_path} ({self.pretrained_encoder_source}); decoder and segmentation "
                "layers freshly initialised"
            )
        else:
            self.print_to_log_file("GLRP: random initialisation (no pretrained encoder)")
        return build_optimizer(self.network, self.recipe, self.num_epochs)

    # ---- loss ---------------------------------------------------------------------------------
    def _build_loss(self):
        if self.recipe.loss == "dice_ce":
            return super()._build_loss()
        if self.label_manager.has_regions:
            raise ValueError(f"{type(self).__name__}: the cross-entropy recipe does not support region-based labels")
        return build_cross_entropy_loss(
            self.label_manager.ignore_label, self._get_deep_supervision_scales(),
            ddp_without_compile=self.is_ddp and not self._do_i_compile(),
        )

    # ---- k labeled patients -------------------------------------------------------------------
    def do_split(self):
        base = Path(self.preprocessed_dataset_folder_base)
        if self.fold != "all":
            ensure_patient_level_splits(self.plans_manager.dataset_name, base, writer=self.local_rank == 0)
        tr_keys, val_keys = super().do_split()
        cases_table = read_cases_table(base)
        if self.fold != "all":  # fold "all" validates on its training cases by design
            self._check_patient_level(tr_keys, val_keys, base / "splits_final.json", cases_table)
        if self.k_labeled is None:
            return tr_keys, val_keys
        patients, kept = select_cases(tr_keys, self.k_labeled, self.fold, self.seed, cases_table)
        self.selected_patients = patients
        if self.local_rank == 0:
            write_selection(Path(self.output_folder) / SELECTION_FILE, {
                "trainer": type(self).__name__, "fold": self.fold, "seed": self.seed, "k": self.k_labeled,
                "patients": patients, "cases": kept, "validation_cases": list(val_keys),
                "available_patients": count_patients(tr_keys, cases_table),
                "draw": "numpy default_rng([seed, fold]).permutation(sorted training patients)[:k]",
            })
        self.print_to_log_file(f"GLRP: k={self.k_labeled} labeled patients (seed {self.seed}): {patients} "
                               f"-> {len(kept)} training cases, {len(val_keys)} validation cases")
        return kept, val_keys

    def _check_patient_level(self, tr_keys, val_keys, splits_file: Path, cases_table: dict | None) -> None:
        try:
            check_patient_level_split(tr_keys, val_keys, self.fold, splits_file, cases_table)
        except ValueError as err:
            # not a GLRP dataset (no glrp_split.json, no _ED/_ES names): patients are unknown, nothing to check
            if cases_table is not None or self.k_labeled is not None or "cannot tell the patient" not in str(err):
                raise
            self.print_to_log_file(f"GLRP: WARNING: cannot verify that fold {self.fold} is patient-level: {err}")

    # ---- epochs, warm-up ----------------------------------------------------------------------
    def _one_pass_iterations(self) -> int:
        """Iterations for one pass over the training slices (2D) or cases (3D) at the global batch size."""
        tr_keys, _ = self.do_split()
        if len(self.configuration_manager.patch_size) == 3:
            return max(1, math.ceil(len(tr_keys) / self.configuration_manager.batch_size))
        dataset = self.dataset_class(self.preprocessed_dataset_folder, tr_keys)
        n_slices = sum(int(dataset.load_case(key)[0].shape[1]) for key in tr_keys)
        return max(1, math.ceil(n_slices / self.configuration_manager.batch_size))

    def on_train_start(self):
        super().on_train_start()
        self._warmup_iterations = warmup_iterations(self.recipe, self.num_epochs, self.num_iterations_per_epoch)
        self._frozen_iterations = encoder_frozen_iterations(self.recipe, self.num_epochs, self.num_iterations_per_epoch)
        if self.local_rank == 0:
            self._write_setup()

    def _write_setup(self) -> None:
        record = {
            "trainer": type(self).__name__, "pretraining_method": self.pretraining_method,
            "pretrained_encoder": os.fspath(self.pretrained_encoder_path) if self.pretrained_encoder_path else None,
            "pretrained_encoder_source": self.pretrained_encoder_source,
            "loaded_encoder_tensors": self.loaded_encoder_tensors, "k_labeled": self.k_labeled,
            "selected_patients": self.selected_patients, "fold": self.fold, "seed": self.seed,
            "pretraining_seed": self.pretraining_seed, "extra_pools": list(self.extra_pools),
            "pretraining_epochs": self.pretraining_epochs, "recipe": asdict(self.recipe),
            "budget": asdict(self.budget),
            "num_epochs": self.num_epochs, "num_iterations_per_epoch": self.num_iterations_per_epoch,
            "num_val_iterations_per_epoch": self.num_val_iterations_per_epoch, "batch_size": self.batch_size,
            "warmup_iterations": self._warmup_iterations, "encoder_frozen_iterations": self._frozen_iterations,
            **self._setup_extras(),
        }
        atomic_write_json(Path(self.output_folder) / SETUP_FILE, record, default=str)

    def _setup_extras(self) -> dict:
        """More entries for ``glrp_finetuning.json`` (the ``_semi`` trainers' unlabeled pool)."""
        return {}

    def on_train_epoch_start(self):
        super().on_train_epoch_start()  # the recipe's schedule sets this epoch's lr
        self._epoch_lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._global_iteration = self.current_epoch * self.num_iterations_per_epoch

    def train_step(self, batch: dict) -> dict:
        self._advance_schedule()
        return super().train_step(batch)

    def _advance_schedule(self) -> int:
        """This iteration's warm-up learning rates; returns the iteration's global index and counts it."""
        it = self._global_iteration
        if self._warmup_iterations or self._frozen_iterations:
            factor = warmup_factor(it, self._warmup_iterations)
            frozen = it < self._frozen_iterations
            for group, lr in zip(self.optimizer.param_groups, self._epoch_lrs):
                group["lr"] = 0.0 if frozen and group.get("name") == "encoder" else lr * factor
            if it == self._frozen_iterations:
                self._release_encoder()
        self._global_iteration += 1
        return it

    def _release_encoder(self) -> None:
        """End of the decoder-only warm-up: the encoder's optimizer state (momentum accumulated from
        gradients it never applied) starts fresh."""
        for group in self.optimizer.param_groups:
            if group.get("name") == "encoder":
                for p in group["params"]:
                    self.optimizer.state.pop(p, None)
        self.print_to_log_file(f"GLRP: encoder released after {self._frozen_iterations} decoder-only iterations")
