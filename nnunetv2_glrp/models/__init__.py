"""Network from plans, encoder feature taps, GLRP projection heads (outside the nnU-Net network)."""

from nnunetv2_glrp.models.heads import (GlobalProjectionHead, LocalProjectionHead, ProjectionHeads)
from nnunetv2_glrp.models.network import PlansContext, build_network, load_plans_context
from nnunetv2_glrp.models.taps import default_local_stage, encoder_features, stage_feature_sizes

__all__ = ["GlobalProjectionHead", "LocalProjectionHead", "ProjectionHeads",
           "PlansContext", "build_network", "load_plans_context", "default_local_stage", "encoder_features",
           "stage_feature_sizes"]
