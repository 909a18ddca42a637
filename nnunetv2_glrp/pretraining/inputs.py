"""What a pretraining run is built from: the slice index, the models, the PSM function, the data loader.

Method-independent apart from ``build_models`` (GLRP's projection heads), ``psm_function`` (only
methods with a local term use it) and the batch sampler (``methods.batch_sampler``: GCL draws volumes x
partitions), so other pretraining methods and a distributed loop can reuse it.
"""

from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from nnunetv2_glrp.data import (PretrainingSliceLoader, SliceRecord, build_slice_index, check_slice_axis,
                                data_digest, make_augmenter, pretraining_data_manifest)
from nnunetv2_glrp.data.slice_index import index_unlabeled_folder
from nnunetv2_glrp.dataset_split import read_split
from nnunetv2_glrp.models import PlansContext, ProjectionHeads, build_network, default_local_stage
from nnunetv2_glrp.patch_grid import receptive_field_boxes
from nnunetv2_glrp.pretraining.config import PretrainingConfig
from nnunetv2_glrp.pretraining.methods import batch_sampler
from nnunetv2_glrp.similarity import patch_ssim_matrix
from nnunetv2_glrp.preparation.extra_pools import manifest_with_pools, pool_names, pool_split, preprocess_pool
from nnunetv2_glrp.preparation.unlabeled import unlabeled_folder


@dataclass(frozen=True)
class PretrainingData:
    """The slices of a run and what identifies them: ``manifest`` (patients and cases of the split) and
    its ``digest``; ``iterations`` per epoch (the config's, or one pass over the slices when it has none)."""

    records: list[SliceRecord]
    manifest: dict
    digest: str
    iterations: int


def pretraining_records(ctx: PlansContext, extra_pools: Sequence[str] = ()) -> tuple[list[SliceRecord], dict]:
    """(slice records, data manifest) of the train/val patients of ``ctx``'s dataset, labeled + unlabeled, and of
    the train/val patients of every extra pool (``preparation.extra_pools``; preprocessed here when missing)."""
    split = read_split(ctx.preprocessed_dataset_folder)
    fix = (f"run `nnUNetv2_glrp preprocess-unlabeled -d {ctx.dataset_name} -c {ctx.configuration}` (plans "
           f"{ctx.plans_identifier}) or `nnUNetv2_glrp prepare -d {ctx.dataset_name}`")
    unlabeled = Path(unlabeled_folder(ctx.dataset_name, ctx.configuration, ctx.plans_identifier))
    records = build_slice_index(ctx.data_folder, unlabeled, split, fix=fix)
    pools = pool_names(extra_pools, ctx.dataset_name)
    for pool in pools:
        folder = preprocess_pool(ctx.dataset_name, ctx.configuration, ctx.plans_identifier, pool)
        records += index_unlabeled_folder(folder, pool_split(pool))
    return records, manifest_with_pools(pretraining_data_manifest(split), pools)


def pretraining_data(ctx: PlansContext, config: PretrainingConfig, extra_pools: Sequence[str] = ()) -> PretrainingData:
    """The run's slices (after checking that the configuration's slices are 2D short-axis slices)."""
    check_slice_axis(ctx.plans_manager.transpose_forward, ctx.configuration, ctx.patch_size)
    records, manifest = pretraining_records(ctx, extra_pools)
    iterations = config.iterations_per_epoch or math.ceil(len(records) / config.batch_size)
    return PretrainingData(records, manifest, data_digest(manifest), iterations)


def build_models(ctx: PlansContext, config: PretrainingConfig):
    """(network, heads, local stage) for ``ctx``; the local stage is resolved from the patch size."""
    kwargs = ctx.configuration_manager.network_arch_init_kwargs
    local_stage = config.local_stage
    if local_stage is None:
        local_stage = default_local_stage(ctx.patch_size, kwargs["strides"], config.grid)
    network = build_network(ctx)
    heads = ProjectionHeads(kwargs["features_per_stage"], local_stage, config.hidden_dim, config.projection_dim,
                            config.grid, pooling=config.head_pooling)
    return network, heads, heads.local_stage


def local_stage_boxes(ctx: PlansContext, local_stage: int, grid: int) -> list:
    """Input boxes (strided projection) of the local stage's grid x grid feature patches."""
    strides = np.array(ctx.configuration_manager.network_arch_init_kwargs["strides"], dtype=int)
    stride = np.prod(strides[: local_stage + 1], axis=0)
    return receptive_field_boxes(ctx.patch_size, tuple(int(s) for s in stride), grid)


def psm_function(ctx: PlansContext, config: PretrainingConfig, local_stage: int):
    """The data loader's PSM function for ``config``: views [V, H, W] -> [g^2 V, g^2 V] over the input boxes
    of the local stage's patches (a picklable partial, for data workers); None when it has no local term."""
    if config.lambda_local <= 0:
        return None
    return functools.partial(patch_ssim_matrix, grid=config.grid,
                             boxes=local_stage_boxes(ctx, local_stage, config.grid), mapping=config.psm_mapping,
                             patch_size=config.psm_patch_size, cross_class=config.psm_cross_class)


def psm_on_device(config: PretrainingConfig, device) -> bool:
    """Whether the step computes the PSM on the training device (else the data loader does): ``psm_location``
    "device", or "auto" on a GPU (the CPU stays with the loader's worker processes, which run beside the step)."""
    if config.psm_location == "auto":
        return torch.device(device).type != "cpu"
    return config.psm_location == "device"


def num_augmentation_processes() -> int:
    from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

    return int(get_allowed_n_proc_DA())


@contextlib.contextmanager
def run_batches(ctx: PlansContext, config: PretrainingConfig, data: PretrainingData, psm_fn, first_epoch: int,
                worker_seeds: np.random.SeedSequence, shard: tuple[int, int] = (0, 1)) -> Iterator:
    """One augmenter serving every epoch of a run from ``first_epoch`` on (the loader reseeds itself per
    epoch, see ``PretrainingSliceLoader``); its worker processes, if any, are stopped on exit. ``shard`` (rank,
    world size): the loader serves this rank's share (``config.batch_size / world`` slices) of each global batch."""
    n_proc = num_augmentation_processes()
    loader = PretrainingSliceLoader(data.records, config.batch_size // shard[1], ctx.patch_size, config.seed,
                                    config.augmentation, psm_fn, iterations_per_epoch=data.iterations,
                                    first_epoch=first_epoch, sampler=batch_sampler(data.records, config), shard=shard)
    seeds = [int(s.generate_state(1)[0]) for s in worker_seeds.spawn(max(n_proc, 1))]
    augmenter = make_augmenter(loader, n_proc, seeds)
    try:
        yield augmenter
    finally:
        if hasattr(augmenter, "_finish"):
            augmenter._finish()
