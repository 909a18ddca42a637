"""GLRP and baseline (SimCLR, GCL, PCL) losses: pure torch functions (this subpackage imports nothing else of nnunetv2_glrp)."""

from __future__ import annotations

from .baselines import (
    global_contrastive_loss,
    partner_weights,
    position_threshold_weights,
    positional_contrastive_loss,
    same_partition_weights,
    simclr_loss,
)
from .global_local import (
    LossWeights,
    global_relative_position_loss,
    glrp_loss,
    local_pair_weights,
)
from .relative_position import FORMULATIONS, relative_position_loss, soft_target_entropy
from .slice_similarity import SIMILARITY_KINDS, slice_similarity

__all__ = [
    "FORMULATIONS",
    "SIMILARITY_KINDS",
    "LossWeights",
    "global_contrastive_loss",
    "global_relative_position_loss",
    "glrp_loss",
    "local_pair_weights",
    "partner_weights",
    "position_threshold_weights",
    "positional_contrastive_loss",
    "relative_position_loss",
    "same_partition_weights",
    "simclr_loss",
    "slice_similarity",
    "soft_target_entropy",
]
