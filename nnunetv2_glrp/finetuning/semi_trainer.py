"""The ``_semi`` trainers' training step: nnU-Net's supervised step plus weak-to-strong consistency (UniMatch).

:class:`SemiSupervisedTrainerMixin` goes in front of :class:`~nnunetv2_glrp.finetuning.trainer_base.
GLRPFineTuningTrainer` (``finetuning.variants`` does this for every recipe with a ``semi`` field). Per iteration:

1. supervised: exactly nnU-Net's ``train_step`` on the labeled batch (its own forward pass, Dice + CE with deep
   supervision), so with no confident pixel a ``_semi`` step IS nnU-Net's step (tests/test_semi_supervised.py);
2. teacher: the same network in eval mode, no grad, on the weak views of the unlabeled batch
   (finetuning.unlabeled_stream, built in a background thread): pseudo-labels = argmax, confident = max
   softmax > threshold;
3. student: one pass over both strong views (their pseudo-labels and masks CutMixed with the views' boxes) and one
   feature-perturbed pass over the weak views (channel dropout on every encoder skip feature, from a generator
   seeded per iteration); loss = w(t) (0.25 CE_s1 + 0.25 CE_s2 + 0.5 CE_fp) on the confident pixels of the
   full-resolution output (the deep-supervision heads get no unlabeled term), w(t) ramped up.

The global RNGs are reseeded at every epoch start from (GLRP_SEED, epoch), and the unlabeled stream and dropout
are seeded by the global iteration, so a resumed run repeats an uninterrupted one (with single-threaded nnU-Net
augmentation; nnU-Net's worker processes keep their own RNGs). 2D configurations only.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from nnunetv2.utilities.helpers import dummy_context
from torch import autocast
from torch import distributed as dist

from nnunetv2_glrp.dataset_split import read_split
from nnunetv2_glrp.finetuning.seeding import seed_everything
from nnunetv2_glrp.finetuning.semi_supervised import (
    channel_dropout, cutmix, pseudo_labels, rampup_weight, unlabeled_loss,
)
from nnunetv2_glrp.finetuning.unlabeled_stream import UnlabeledPool, UnlabeledStream, build_unlabeled_pool


def _full_resolution(output):
    return output[0] if isinstance(output, (list, tuple)) else output


def _frame(split_cases: dict, case: str):
    info = split_cases.get(case, {})
    return (info.get("patient"), info.get("phase")) if info.get("phase") else None


class SemiSupervisedTrainerMixin:
    semi_supervised = True

    def do_split(self):
        tr_keys, val_keys = super().do_split()
        self._semi_labeled_cases = list(tr_keys)
        return tr_keys, val_keys

    # ---- the unlabeled stream -----------------------------------------------------------------
    def on_train_start(self):
        if not self.was_initialized:  # nnU-Net's on_train_start would do it; the pool needs the batch size first
            self.initialize()
        cfg = self.recipe.semi
        if len(self.configuration_manager.patch_size) != 2:
            raise ValueError(f"{type(self).__name__}: the _semi recipe supports 2D configurations only, "
                             f"{self.configuration_name} has patch size {self.configuration_manager.patch_size}")
        base = Path(self.preprocessed_dataset_folder_base)
        self._semi_split = read_split(base)
        labeled_cases, _ = self.do_split()
        rank, world = (dist.get_rank(), dist.get_world_size()) if self.is_ddp else (0, 1)
        self._semi_rank = rank
        self._semi_batch = cfg.unlabeled_batch(self.batch_size)
        folder = base / f"{self.configuration_manager.data_identifier}_unlabeled"
        self.semi_pool: UnlabeledPool = build_unlabeled_pool(folder, self._semi_split, labeled_cases,
                                                             self._semi_batch, rank, world)
        self._semi_reuse = 0
        self.print_to_log_file(
            f"GLRP semi: unlabeled pool of rank {rank}/{world}: {len(self.semi_pool.records)} slices of "
            f"{len(self.semi_pool.patients)} train/val patients from {folder}; {self._semi_batch} per iteration; "
            f"{self.semi_pool.excluded_slices} slices of the labeled frames left out")
        if self.semi_pool.labeled_frames_kept:
            self.print_to_log_file("GLRP semi: WARNING: the pool without the labeled frames is smaller than one "
                                   "unlabeled batch: the labeled frames stay in it (an unlabeled batch may repeat a "
                                   "labeled slice)")
        self._semi_stream = UnlabeledStream(self.semi_pool.records, self._semi_batch,
                                            self.configuration_manager.patch_size, cfg, self.seed, rank)
        super().on_train_start()

    def _setup_extras(self) -> dict:
        pool = self.semi_pool
        return {"semi": {"unlabeled_batch_size": self._semi_batch, "pool_slices": len(pool.records),
                         "pool_patients": list(pool.patients), "labeled_frames_kept": pool.labeled_frames_kept,
                         "labeled_frame_slices_left_out": pool.excluded_slices, "rank": self._semi_rank,
                         "stream_seed": "numpy default_rng([semi.seed, GLRP_SEED, rank, global iteration])",
                         "epoch_reseed": "seed_everything(SeedSequence([GLRP_SEED, epoch]))"}}

    def on_train_epoch_start(self):
        super().on_train_epoch_start()
        seed_everything(int(np.random.SeedSequence([int(self.seed), int(self.current_epoch)]).generate_state(1)[0]))
        self._semi_stream.start(self._global_iteration)
        self._semi_epoch_outputs = []

    def on_train_end(self):
        self._semi_stream.close()
        super().on_train_end()

    def on_train_epoch_end(self, train_outputs):
        if train_outputs and "loss_unlabeled" in train_outputs[0]:
            mean = lambda key: float(np.mean([o[key] for o in train_outputs]))  # noqa: E731
            self.print_to_log_file(f"GLRP semi: supervised loss {mean('loss_supervised'):.4f}, unlabeled loss "
                                   f"{mean('loss_unlabeled'):.4f}, confident pixels {mean('confident_fraction'):.3f}, "
                                   f"weight {mean('unlabeled_weight'):.3f}")
            train_outputs = [{"loss": o["loss"]} for o in train_outputs]
        super().on_train_epoch_end(train_outputs)

    # ---- the step -----------------------------------------------------------------------------
    def _check_no_reuse(self, batch: dict, unlabeled: dict) -> None:
        cases = self._semi_split["cases"]
        labeled = {_frame(cases, k) for k in batch.get("keys", ())} - {None}
        reused = sum(_frame(cases, case) in labeled for case, _ in unlabeled["slices"])
        if reused and not self.semi_pool.labeled_frames_kept:
            raise AssertionError(f"unlabeled batch {unlabeled['index']} repeats a frame of the labeled batch")
        if reused and self._semi_reuse == 0:
            self.print_to_log_file("GLRP semi: an unlabeled batch holds a frame of the labeled batch (pool too small)")
        self._semi_reuse += reused

    def _dropout_generator(self, iteration: int) -> torch.Generator:
        cfg = self.recipe.semi
        seed = int(np.random.SeedSequence([cfg.seed, self.seed, self._semi_rank, iteration, 1]).generate_state(1)[0])
        return torch.Generator(device=self.device).manual_seed(seed)

    def _feature_perturbed(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        module = self.network.module if self.is_ddp else self.network
        module = getattr(module, "_orig_mod", module)
        p = self.recipe.semi.feature_dropout
        hook = module.encoder.register_forward_hook(
            lambda _m, _i, skips: [channel_dropout(s, p, generator) for s in skips])
        try:
            return _full_resolution(self.network(images))
        finally:
            hook.remove()

    def train_step(self, batch: dict) -> dict:
        cfg = self.recipe.semi
        it = self._advance_schedule()
        unlabeled = self._semi_stream.next()
        if unlabeled["index"] != it:
            raise RuntimeError(f"unlabeled batch {unlabeled['index']} at iteration {it}: stream out of step")
        self._check_no_reuse(batch, unlabeled)
        data = batch["data"].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)
        weak = unlabeled["weak"].to(self.device, non_blocking=True)
        strong = torch.cat(unlabeled["strong"]).to(self.device, non_blocking=True)
        boxes, partner = unlabeled["boxes"].to(self.device), unlabeled["partner"].to(self.device)
        weight = rampup_weight(it, self.num_epochs * self.num_iterations_per_epoch, cfg.rampup_fraction,
                               cfg.loss_weight)

        self.optimizer.zero_grad(set_to_none=True)
        with autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context():
            supervised = self.loss(self.network(data), target)  # nnU-Net's step, unchanged
            self.network.eval()
            with torch.no_grad():
                labels, mask = pseudo_labels(_full_resolution(self.network(weak)), cfg.threshold)
            self.network.train()
            targets = tuple((cutmix(labels, boxes[v], partner), cutmix(mask, boxes[v], partner)) for v in range(2))
            strong_logits = _full_resolution(self.network(strong)).chunk(2)
            fp_logits = self._feature_perturbed(weak, self._dropout_generator(it))
            loss_u = unlabeled_loss(tuple(strong_logits), fp_logits, labels, mask, targets, cfg.strong_weights,
                                    cfg.feature_perturbation_weight)
            total = supervised + weight * loss_u

        if self.grad_scaler is not None:
            self.grad_scaler.scale(total).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            total.backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        return {"loss": total.detach().cpu().numpy(), "loss_supervised": supervised.detach().cpu().numpy(),
                "loss_unlabeled": loss_u.detach().cpu().numpy(),
                "confident_fraction": np.array(float(mask.float().mean())), "unlabeled_weight": np.array(weight)}
