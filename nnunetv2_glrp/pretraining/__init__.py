"""GLRP pretraining phase: config, loop, checkpoint cache (uses losses, similarity, data, models)."""

from nnunetv2_glrp.pretraining.api import (check_named_encoder, ensure_pretrained, folder_for_config,
                                           load_pretrained_encoder_state)
from nnunetv2_glrp.pretraining.config import METHODS, PRESETS, PretrainingConfig, make_config
from nnunetv2_glrp.pretraining.loop import run_pretraining

__all__ = ["check_named_encoder", "ensure_pretrained", "folder_for_config", "load_pretrained_encoder_state",
           "METHODS", "PRESETS", "PretrainingConfig", "make_config", "run_pretraining"]
