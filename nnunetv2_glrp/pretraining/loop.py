"""The GLRP pretraining loop: encoder + projection heads, SGD + cosine, checkpoint every epoch, resume.

Output folder contents: ``config.json`` (the config incl. seed, the values resolved from the data:
iterations per epoch, local stage, number of slices, and ``data``: the digest and patients of the
pretraining data, see ``data.pretraining_data_manifest``), ``log.txt`` (one line per epoch with the loss
terms and the time split), ``loss_curve.png``, ``checkpoint_latest.pth`` (weights, optimizer, scheduler,
RNG states, per-epoch statistics, data digest; written atomically after every epoch) and, when finished,
``pretrained_encoder.pth``. The history keeps per-epoch statistics only (mean, std, min, max and last
of the iteration losses), so the checkpoint does not grow with the number of iterations.
A run killed at any point restarts from the last finished epoch and ends in the same state as an
uninterrupted run (single-threaded data loading; every epoch is reseeded from (seed, epoch)).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from nnunetv2_glrp.data import (PretrainingSliceLoader, SliceRecord, build_slice_index, check_slice_axis,
                                data_digest, load_split, make_augmenter, pretraining_data_manifest)
from nnunetv2_glrp.models import PlansContext, ProjectionHeads, build_network, default_local_stage
from nnunetv2_glrp.atomic_files import atomic_write_text
from nnunetv2_glrp.pretraining.checkpoint import (atomic_torch_save, rng_state, seed_epoch,
                                                  set_rng_state)
from nnunetv2_glrp.pretraining.config import PretrainingConfig
from nnunetv2_glrp.pretraining.plotting import plot_loss_curve
from nnunetv2_glrp.pretraining.step import StepTimer, training_step

__all__ = ["CHECKPOINT", "ENCODER", "StepTimer", "training_step", "compute_psm", "local_stage_boxes",
           "psm_function", "unlabeled_data_folder", "pretraining_records", "epoch_loss_statistics", "build_models",
           "run_pretraining"]

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint_latest.pth"
ENCODER = "pretrained_encoder.pth"


def compute_psm(images: torch.Tensor, grid: int, boxes, mapping: str, patch_size: int | None,
                cross_class: str = "zero") -> torch.Tensor:
    """PSM of views [V, H, W] -> [grid^2 V, grid^2 V] over the input ``boxes`` of the local stage's patches
    (module-level so that data workers can pickle it)."""
    from nnunetv2_glrp.similarity import patch_ssim_matrix

    return patch_ssim_matrix(images, grid=grid, boxes=boxes, mapping=mapping, patch_size=patch_size,
                             cross_class=cross_class)


def psm_function(ctx: PlansContext, config: PretrainingConfig, local_stage: int):
    """The data loader's PSM function for ``config`` (None when it has no local term)."""
    if config.lambda_local <= 0:
        return None
    return functools.partial(compute_psm, grid=config.grid, boxes=local_stage_boxes(ctx, local_stage, config.grid),
                             mapping=config.psm_mapping, patch_size=config.psm_patch_size,
                             cross_class=config.psm_cross_class)


def local_stage_boxes(ctx: PlansContext, local_stage: int, grid: int) -> list:
    """Input boxes (strided projection) of the local stage's grid x grid feature patches."""
    from nnunetv2_glrp.patch_grid import receptive_field_boxes

    strides = np.array(ctx.configuration_manager.network_arch_init_kwargs["strides"], dtype=int)
    stride = np.prod(strides[: local_stage + 1], axis=0)
    return receptive_field_boxes(ctx.patch_size, tuple(int(s) for s in stride), grid)


def unlabeled_data_folder(ctx: PlansContext) -> Path:
    try:
        from nnunetv2_glrp.unlabeled_preprocessing import unlabeled_folder
    except ImportError:  # same convention, module not importable
        return ctx.data_folder.with_name(ctx.data_folder.name + "_unlabeled")
    return Path(unlabeled_folder(ctx.dataset_name, ctx.configuration, ctx.plans_identifier))


def pretraining_records(ctx: PlansContext) -> tuple[list[SliceRecord], dict]:
    """(slice records, data manifest) of the train/val patients of ``ctx``'s dataset, labeled + unlabeled."""
    split = load_split(ctx.preprocessed_dataset_folder)
    fix = (f"run `nnUNetv2_glrp preprocess-unlabeled -d {ctx.dataset_name} -c {ctx.configuration}` (plans "
           f"{ctx.plans_identifier}) or `nnUNetv2_glrp prepare -d {ctx.dataset_name}`")
    records = build_slice_index(ctx.data_folder, unlabeled_data_folder(ctx), split, fix=fix)
    return records, pretraining_data_manifest(split)


def num_augmentation_processes() -> int:
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

    return int(get_allowed_n_proc_DA())


def build_models(ctx: PlansContext, config: PretrainingConfig):
    """(network, heads, local stage) for ``ctx``; the local stage is resolved from the patch size."""
    kwargs = ctx.configuration_manager.network_arch_init_kwargs
    local_stage = config.local_stage
    if local_stage is None:
        local_stage = default_local_stage(ctx.patch_size, kwargs["strides"], config.grid)
    network = build_network(ctx)
    heads = ProjectionHeads(kwargs["features_per_stage"], local_stage, config.hidden_dim, config.projection_dim,
                            config.grid)
    return network, heads, heads.local_stage


def epoch_loss_statistics(terms: list[dict[str, float]]) -> dict[str, float]:
    """Per-epoch summary of the iteration losses: mean of each term, and std/min/max/last of the total."""
    out = {}
    for key in ("loss", "grp", "lrp"):
        values = np.array([t[key] for t in terms], dtype=float)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    total = np.array([t["loss"] for t in terms], dtype=float)
    out.update(loss_std=float(total.std()), loss_min=float(total.min()), loss_max=float(total.max()),
               loss_last=float(total[-1]), iterations=len(terms))
    return out


def _file_logging(folder: Path) -> logging.Handler:
    handler = logging.FileHandler(folder / "log.txt", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def run_pretraining(ctx: PlansContext, config: PretrainingConfig, folder: Path, device: str = "cpu",
                    stop_after_epoch: int | None = None,
                    on_epoch_end: Callable[[int, dict], None] | None = None) -> Path:
    """Run or resume pretraining into ``folder``; return the path of ``pretrained_encoder.pth``.

    ``stop_after_epoch`` (0-based) returns after that epoch's checkpoint, as if the run had been killed
    there; ``on_epoch_end(epoch, stats)`` runs after every checkpoint (an exception there stops the run).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    check_slice_axis(ctx.plans_manager.transpose_forward, ctx.configuration, ctx.patch_size)
    records, manifest = pretraining_records(ctx)
    digest = data_digest(manifest)
    iterations = config.iterations_per_epoch or math.ceil(len(records) / config.batch_size)
    torch.manual_seed(config.seed)  # initial weights (overwritten by the checkpoint when resuming)
    network, heads, local_stage = build_models(ctx, config)
    network.to(dev).train()
    heads.to(dev).train()
    resolved = {"iterations_per_epoch": iterations, "local_stage": local_stage, "n_slices": len(records),
                "n_labeled_slices": sum(r.kind == "labeled" for r in records),
                "patients": sorted({r.patient for r in records}), "dataset": ctx.dataset_name,
                "plans_identifier": ctx.plans_identifier, "configuration": ctx.configuration,
                "psm_cross_class": config.psm_cross_class if config.lambda_local > 0 else None}
    data = {"digest": digest, "patients": manifest["patients"], "n_cases": len(manifest["cases"]),
            "n_unlabeled_cases": sum(c[3] == "unlabeled" for c in manifest["cases"])}
    ckpt_path = folder / CHECKPOINT
    ckpt = torch.load(ckpt_path, map_location=dev, weights_only=False) if ckpt_path.is_file() else None
    if ckpt is not None and ckpt.get("data_digest") != digest:  # never resume weights trained on other data
        raise ValueError(f"{folder}: its checkpoint was trained on data with digest {ckpt.get('data_digest')}, the "
                         f"dataset now gives {digest} (re-converted or re-split?); delete {folder} to pretrain again")
    atomic_write_text(folder / "config.json", json.dumps({"config": config.to_dict(), "resolved": resolved,
                                                          "data": data}, indent=2, default=list))
    params = list(network.encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * iterations)
    history: dict[str, list] = {"epoch": []}
    start_epoch = 0
    handler = _file_logging(folder)
    try:
        if ckpt is not None:
            network.encoder.load_state_dict(ckpt["encoder"])
            heads.load_state_dict(ckpt["heads"])
            optimizer.load_state_dict(ckpt["optimizer"])
            scheduler.load_state_dict(ckpt["scheduler"])
            set_rng_state(ckpt["rng"])
            history, start_epoch = ckpt["history"], ckpt["epoch"] + 1
            logger.info("resumed from %s after epoch %d", ckpt_path, ckpt["epoch"])
        else:
            logger.info("pretraining %s on %s/%s/%s: %d slices (%d patients), %d epochs x %d iterations, batch %d, "
                        "local stage %d, device %s", config.method, ctx.dataset_name, ctx.plans_identifier,
                        ctx.configuration, len(records), len(resolved["patients"]), config.epochs, iterations,
                        config.batch_size, local_stage, dev)
        n_proc = num_augmentation_processes()
        psm_fn = psm_function(ctx, config, local_stage)
        for epoch in range(start_epoch, config.epochs):
            ss = seed_epoch(config.seed, epoch)
            data_seed = int(ss.generate_state(4)[3])
            loader = PretrainingSliceLoader(records, config.batch_size, ctx.patch_size, data_seed,
                                            config.augmentation, psm_fn)
            augmenter = make_augmenter(loader, n_proc, [int(s.generate_state(1)[0]) for s in ss.spawn(max(n_proc, 1))])
            timer = StepTimer(dev)
            terms = []
            t_epoch = time.perf_counter()
            try:
                bar = tqdm(range(iterations), desc=f"{config.method} epoch {epoch + 1}/{config.epochs}",
                           leave=False, disable=None)
                for _ in bar:
                    out = training_step(network, heads, next(augmenter), config, optimizer, dev, timer)
                    scheduler.step()
                    terms.append(out)
                    bar.set_postfix(loss=f"{out['loss']:.4f}")
            finally:
                if hasattr(augmenter, "_finish"):
                    augmenter._finish()
            seconds = time.perf_counter() - t_epoch
            stats = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], "seconds": seconds,
                     "slices_per_s": iterations * config.batch_size / seconds, "step_seconds": timer.step,
                     "loss_fn_share": timer.loss_share, "loss_fn_forward_seconds": timer.loss_forward,
                     "loss_fn_backward_seconds": timer.loss_backward, "psm_seconds": timer.psm,
                     **epoch_loss_statistics(terms)}
            history["epoch"].append(stats)
            logger.info("epoch %d/%d loss %.4f grp %.4f lrp %.4f lr %.5f | %.1f s, %.1f slices/s; loss functions "
                        "(forward %.2f s + backward %.2f s) %.1f%% of the %.1f s model steps; PSM %.2f s in the data "
                        "loader", epoch + 1, config.epochs, stats["loss"], stats["grp"], stats["lrp"], stats["lr"],
                        seconds, stats["slices_per_s"], timer.loss_forward, timer.loss_backward,
                        100 * timer.loss_share, timer.step, timer.psm)
            atomic_torch_save({"epoch": epoch, "encoder": network.encoder.state_dict(), "heads": heads.state_dict(),
                               "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                               "rng": rng_state(), "history": history, "config": config.to_dict(),
                               "data_digest": digest}, ckpt_path)
            plot_loss_curve(history, folder / "loss_curve.png")
            if on_epoch_end is not None:
                on_epoch_end(epoch, stats)
            if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch + 1 < config.epochs:
                logger.info("stopping after epoch %d as requested", epoch + 1)
                return folder / ENCODER
        final = folder / ENCODER
        if not final.is_file():
            atomic_torch_save({"encoder_state_dict": network.encoder.state_dict(), "method": config.method,
                               "config": config.to_dict(), "plans_identifier": ctx.plans_identifier,
                               "configuration": ctx.configuration,
                               "network_class": ctx.configuration_manager.network_arch_class_name}, final)
            logger.info("finished: %s", final)
        return final
    finally:
        logger.removeHandler(handler)
        handler.close()
