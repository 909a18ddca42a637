"""The pretraining methods: what each one changes in the shared step, loader and cache.

Every method trains the same encoder and projection heads with the same step (``step.training_step``),
optimizer, augmentation, checkpoints and cache. A method is its loss weights (lambda of the global and
the local term), the pair weights of its global term (all terms are the soft-target InfoNCE of
``losses.relative_position_loss``) and its batch sampler:

=============================  ==============  =========================================  ======================
method                         lambda g / l    global pair weights W_ij                   batches
=============================  ==============  =========================================  ======================
GLRP, GRP, LRP, GLRPLinear     see losses      slice similarity d_ij (``similarity_kind``)  position-stratified
SimCLR                         1 / 0           1 for the other view of the slice           position-stratified
PCL                            1 / 0           1 where abs(x_i - x_j) < ``pcl_threshold``  position-stratified
GCL                            1 / 0           1 for the same partition of the volume      volumes x partitions
=============================  ==============  =========================================  ======================

The baselines' weights are the builders of ``losses.baselines`` (``simclr_loss`` etc. are the same loss on
the same weights). Their global term is logged as ``grp`` like GLRP's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from nnunetv2_glrp.data import SliceRecord, VolumePartitionSampler
from nnunetv2_glrp.losses import (LossWeights, partner_weights, position_threshold_weights, same_partition_weights,
                                  slice_similarity)
from nnunetv2_glrp.registry import PRETRAINING_METHODS as SPECS

#: (positions [2N] on the step's device, batch, config) -> [2N, 2N] pair weights of the global term
GlobalWeights = Callable[[torch.Tensor, dict, object], torch.Tensor]


@dataclass(frozen=True)
class PretrainingMethod:
    loss_weights: LossWeights
    global_weights: GlobalWeights
    volume_partitions: bool = False  # GCL: batches of volumes x partitions (VolumePartitionSampler)
    baseline: bool = False  # 0/1 pair weights: only the soft-target formulation is defined


def _slice_similarity(positions: torch.Tensor, batch: dict, config) -> torch.Tensor:
    return slice_similarity(positions, a=config.a, kind=config.similarity_kind)


def _other_view(positions: torch.Tensor, batch: dict, config) -> torch.Tensor:
    return partner_weights(positions.shape[0], positions.device)


def _near_position(positions: torch.Tensor, batch: dict, config) -> torch.Tensor:
    return position_threshold_weights(positions, config.pcl_threshold)


def _same_partition(positions: torch.Tensor, batch: dict, config) -> torch.Tensor:
    if batch.get("partitions") is None:
        raise ValueError("GCL needs batches drawn by VolumePartitionSampler (with 'partitions'); this batch has none")
    return same_partition_weights(batch["partitions"].to(positions.device))


_PAIR_WEIGHTS: dict[str, GlobalWeights] = {"slice-similarity": _slice_similarity, "partner": _other_view,
                                            "position-threshold": _near_position, "partition": _same_partition}
#: built from ``registry.PRETRAINING_METHODS`` (the one list of methods)
PRETRAINING_METHODS: dict[str, PretrainingMethod] = {
    name: PretrainingMethod(LossWeights(s.lambda_global, s.lambda_local, s.similarity_kind), _PAIR_WEIGHTS[s.pair_weights],
                            volume_partitions=s.pair_weights == "partition", baseline=s.baseline)
    for name, s in SPECS.items()
}


def global_pair_weights(config, positions: torch.Tensor, batch: dict) -> torch.Tensor:
    """[2N, 2N] pair weights of ``config.method``'s global term for a batch (positions on the step's device)."""
    return PRETRAINING_METHODS[config.method].global_weights(positions, batch, config)


def batch_sampler(records: Sequence[SliceRecord], config):
    """The loader's sampler for ``config.method``: None (the position-stratified default) or GCL's."""
    if PRETRAINING_METHODS[config.method].volume_partitions:
        return VolumePartitionSampler(records, config.batch_size, config.gcl_partitions)
    return None
