"""The GLRP pretraining loop: encoder + projection heads, SGD + cosine, checkpoint every epoch, resume.

Output folder contents: ``config.json`` (the config incl. seed, the values resolved from the data:
iterations per epoch, local stage, number of slices, and ``data``: the digest and patients of the
pretraining data, see ``data.pretraining_data_manifest``), ``log.txt`` (one line per epoch with the loss
terms and the time split), ``loss_curve.png``, ``checkpoint_latest.pth`` (weights, optimizer, scheduler, the fp16
gradient scaler, RNG states, per-epoch statistics, data digest; written atomically after every epoch) and, when
finished,
``pretrained_encoder.pth``. The history keeps per-epoch statistics only (mean, std, min, max and last
of the iteration losses), so the checkpoint does not grow with the number of iterations.
A run killed at any point restarts from the last finished epoch and ends in the same state as an
uninterrupted run (single-threaded data loading; every epoch is reseeded from (seed, epoch)).

The pieces: ``inputs`` (slices, models, PSM function, the one augmenter of the run), ``epoch`` (the steps
of one epoch and their statistics), ``step`` (one GLRP step), ``checkpoint`` (save, resume, final encoder).

Distributed (a process group of N ranks, started by ``launch``): every rank runs this loop on its share of each
global batch (``distributed``); only rank 0 writes files (config.json, log.txt, the loss curve, checkpoints, the
final encoder); every rank resumes from rank 0's checkpoint; the PSM is computed on the device over the gathered
global batch; on CUDA, BatchNorm layers become SyncBatchNorm so they see the global batch too.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from nnunetv2_glrp.atomic_files import atomic_write_text
from nnunetv2_glrp.models import PlansContext
from nnunetv2_glrp.pretraining.checkpoint import (load_checkpoint, restore_checkpoint, save_checkpoint,
                                                  save_pretrained_encoder, seed_epoch)
from nnunetv2_glrp.pretraining.compiling import feature_function
from nnunetv2_glrp.pretraining.config import PretrainingConfig
from nnunetv2_glrp.pretraining.distributed import SINGLE, RankGroup, current_rank_group
from nnunetv2_glrp.pretraining.epoch import run_epoch
from nnunetv2_glrp.pretraining.inputs import (PretrainingData, build_models, pretraining_data, psm_function, psm_on_device,
                                              run_batches)
from nnunetv2_glrp.pretraining.plotting import plot_loss_curve
from nnunetv2_glrp.pretraining.step import training_step

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint_latest.pth"
ENCODER = "pretrained_encoder.pth"


def _file_logging(folder: Path) -> logging.Handler:
    handler = logging.FileHandler(folder / "log.txt", mode="a")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return handler


def write_run_record(folder: Path, ctx: PlansContext, config: PretrainingConfig, data: PretrainingData,
                     local_stage: int, device="cpu", group: RankGroup = SINGLE) -> dict:
    """Write ``config.json`` (config, values resolved from the data, data record); return the resolved values."""
    records, manifest = data.records, data.manifest
    resolved = {"iterations_per_epoch": data.iterations, "local_stage": local_stage, "n_slices": len(records),
                "n_labeled_slices": sum(r.kind == "labeled" for r in records),
                "patients": sorted({r.patient for r in records}), "dataset": ctx.dataset_name,
                "plans_identifier": ctx.plans_identifier, "configuration": ctx.configuration,
                "psm_cross_class": config.psm_cross_class if config.lambda_local > 0 else None,
                "psm_computed_on": (None if config.lambda_local <= 0 else
                                    str(device) if _psm_on_device(config, device, group) else "data loader"),
                "world_size": group.world, "batch_per_rank": config.batch_size // group.world,
                "sharding": ("single process" if group.world == 1 else
                             f"every rank draws the global batch of {config.batch_size} slices from the run's seed and "
                             f"keeps its contiguous share of {config.batch_size // group.world}; views augmented from "
                             f"seeds of (seed, epoch, batch, slice in the global batch); embeddings, positions and PSM "
                             f"views all-gathered")}
    record = {"digest": data.digest, "patients": manifest["patients"], "n_cases": len(manifest["cases"]),
              "n_unlabeled_cases": sum(c[3] == "unlabeled" for c in manifest["cases"])}
    if manifest.get("extra_pools"):
        record["extra_pools"] = [pool["dataset"] for pool in manifest["extra_pools"]]
        record["n_pool_cases"] = {pool["dataset"]: len(pool["cases"]) for pool in manifest["extra_pools"]}
    atomic_write_text(folder / "config.json", json.dumps({"config": config.to_dict(), "resolved": resolved,
                                                          "data": record}, indent=2, default=list))
    return resolved


def make_optimizer(network, heads, config: PretrainingConfig, iterations: int):
    """SGD over the encoder and the heads, cosine-annealed per iteration to 0 over the whole run."""
    params = list(network.encoder.parameters()) + list(heads.parameters())
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * iterations)
    return optimizer, scheduler


def make_scaler(config: PretrainingConfig, device: torch.device) -> torch.amp.GradScaler | None:
    """The run's gradient scaler for fp16 autocast (PyTorch's defaults: initial scale 2**16, halved on an inf/nan
    gradient, doubled after 2,000 finite steps); None otherwise (bf16 has float32's range and needs none)."""
    return torch.amp.GradScaler(device.type) if config.autocast == "fp16" else None


def _psm_on_device(config: PretrainingConfig, device, group: RankGroup) -> bool:
    """Distributed runs compute the PSM over the gathered global batch, hence on the device, in the step."""
    return group.world > 1 or psm_on_device(config, device)


def _log_epoch(epoch: int, config: PretrainingConfig, stats: dict) -> None:
    """One readable line per epoch. A term the method does not compute (GRP-only: no LRP; LRP-only: no GRP; its
    statistics are nan) is left out of the line rather than printed as nan."""
    terms = [t for t in ("grp", "lrp") if math.isfinite(stats[t])]
    values = " ".join(f"{t} {stats[t]:.4f}" for t in terms)
    excess = " ".join(f"{t} {stats.get(t + '_excess', math.nan):.4f}" for t in terms)
    collapse = " and ".join(f"{stats.get(t + '_collapse_excess', math.nan):.4f}" for t in terms)
    logger.info("epoch %d/%d loss %.4f %s (above the floor: %s; collapsed embeddings would be %s above it) "
                "lr %.5f | %.1f s, %.1f slices/s; loss functions (forward %.2f s + backward %.2f s) %.1f%% of the "
                "%.1f s model steps; PSM %.2f s (data loader or device)", epoch + 1, config.epochs, stats["loss"],
                values, excess, collapse, stats["lr"], stats["seconds"], stats["slices_per_s"],
                stats["loss_fn_forward_seconds"], stats["loss_fn_backward_seconds"], 100 * stats["loss_fn_share"],
                stats["step_seconds"], stats["psm_seconds"])
    if "loss_scale" in stats:
        logger.info("fp16: %d of %d steps skipped by the gradient scaler (inf/nan gradients); loss scale now %g",
                    stats["skipped_steps"], stats["iterations"], stats["loss_scale"])


def _train(ctx, config, folder, data, models, optimizer, scheduler, history, start_epoch, device,
           stop_after_epoch, on_epoch_end, group: RankGroup, scaler=None) -> bool:
    """Epochs ``start_epoch``.. with a checkpoint after each (rank 0); False when stopped early as requested."""
    network, heads, local_stage = models

    psm_fn = psm_function(ctx, config, local_stage)
    on_device = _psm_on_device(config, device, group)
    features = feature_function(network, config.feature_tap, config.compile)  # the module itself stays uncompiled

    def step(batch, timer):
        return training_step(network, heads, batch, config, optimizer, device, timer, psm_fn if on_device else None,
                             group=group, features=features, scaler=scaler)

    with run_batches(ctx, config, data, None if on_device else psm_fn, start_epoch,
                     np.random.SeedSequence([config.seed, start_epoch]), shard=(group.rank, group.world)) as batches:
        for epoch in range(start_epoch, config.epochs):
            seed_epoch(config.seed, epoch)
            stats, _ = run_epoch(step, batches, data.iterations, config.batch_size, scheduler, device,
                                 f"{config.method} epoch {epoch + 1}/{config.epochs}")
            stats = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"], **stats}
            if scaler is not None:
                stats["loss_scale"] = scaler.get_scale()
            history["epoch"].append(stats)
            if group.main:
                _log_epoch(epoch, config, stats)
                save_checkpoint(folder / CHECKPOINT, epoch, network, heads, optimizer, scheduler, history, config,
                                data.digest, scaler)
                plot_loss_curve(history, folder / "loss_curve.png")
            group.barrier()  # no rank runs ahead of the last checkpoint
            if on_epoch_end is not None:
                on_epoch_end(epoch, stats)
            if stop_after_epoch is not None and epoch >= stop_after_epoch and epoch + 1 < config.epochs:
                logger.info("stopping after epoch %d as requested", epoch + 1)
                return False
    return True


def run_pretraining(ctx: PlansContext, config: PretrainingConfig, folder: Path, device: str = "cpu",
                    stop_after_epoch: int | None = None,
                    on_epoch_end: Callable[[int, dict], None] | None = None, extra_pools: tuple[str, ...] = (),
                    distributed: bool = True) -> Path:
    """Run or resume pretraining into ``folder``; return the path of ``pretrained_encoder.pth``.

    ``extra_pools``: dataset names whose train/val frames join the target's (``preparation.extra_pools``).
    ``stop_after_epoch`` (0-based) returns after that epoch's checkpoint, as if the run had been killed
    there; ``on_epoch_end(epoch, stats)`` runs after every checkpoint (an exception there stops the run).
    ``distributed``: run on all ranks of the initialised process group (every rank must call this; a single
    process without one); False: this process pretrains alone.
    """
    group = current_rank_group() if distributed else SINGLE
    if config.batch_size % group.world:
        raise ValueError(f"batch size {config.batch_size} (the global batch) is not divisible by the {group.world} "
                         f"ranks of the process group; choose a multiple of {group.world}")
    folder = Path(folder)
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", torch.cuda.current_device())
    if group.main:
        folder.mkdir(parents=True, exist_ok=True)
        data = pretraining_data(ctx, config, extra_pools)  # may preprocess extra pools: rank 0 first
    group.barrier()
    if not group.main:
        data = pretraining_data(ctx, config, extra_pools)
    torch.manual_seed(config.seed)  # initial weights (overwritten by the checkpoint when resuming)
    network, heads, local_stage = build_models(ctx, config)
    if group.world > 1:  # the heads need nothing: they run on the gathered global batch
        if dev.type == "cuda":
            network = torch.nn.SyncBatchNorm.convert_sync_batchnorm(network)
        elif any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in network.modules()) and group.main:
            logger.warning("the encoder's BatchNorm layers normalise each rank's share of the batch: the CPU has no "
                           "SyncBatchNorm, so this run is not the single-process run with the global batch")
    network.to(dev).train()
    heads.to(dev).train()
    group.broadcast_parameters((network, heads))
    if config.channels_last:
        network.to(memory_format=torch.channels_last)
    ckpt = load_checkpoint(folder / CHECKPOINT, data.digest, dev)
    group.barrier()  # every rank has read rank 0's checkpoint before rank 0 writes anything
    resolved = write_run_record(folder, ctx, config, data, local_stage, dev, group) if group.main else {}
    optimizer, scheduler = make_optimizer(network, heads, config, data.iterations)
    scaler = make_scaler(config, dev)
    history: dict[str, list] = {"epoch": []}
    start_epoch = 0
    handler = _file_logging(folder) if group.main else None
    try:
        if ckpt is not None:
            history, start_epoch = restore_checkpoint(ckpt, network, heads, optimizer, scheduler, scaler)
            logger.info("resumed from %s after epoch %d", folder / CHECKPOINT, ckpt["epoch"])
        elif group.main:
            logger.info("pretraining %s on %s/%s/%s: %d slices (%d patients), %d epochs x %d iterations, batch %d "
                        "(%d ranks x %d), local stage %d, device %s", config.method, ctx.dataset_name,
                        ctx.plans_identifier, ctx.configuration, len(data.records), len(resolved["patients"]),
                        config.epochs, data.iterations, config.batch_size, group.world,
                        config.batch_size // group.world, local_stage, dev)
        finished = _train(ctx, config, folder, data, (network, heads, local_stage), optimizer, scheduler, history,
                          start_epoch, dev, stop_after_epoch, on_epoch_end, group, scaler)
        final = folder / ENCODER
        if finished and group.main and not final.is_file():
            save_pretrained_encoder(final, network, config, ctx)
            logger.info("finished: %s", final)
        group.barrier()
        return final
    finally:
        if handler is not None:
            logger.removeHandler(handler)
            handler.close()
