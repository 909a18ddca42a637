"""Cached pretraining: the folder of a (dataset, plans, configuration, method, config) and its encoder.

``$nnUNet_results/<DatasetName>/glrp_pretraining/<method>__<plans>__<configuration>__<config hash>/``.
The hash covers every config field (seed included), so a changed hyperparameter never reuses a stale
encoder. ``ensure_pretrained`` takes an exclusive lock file in that folder: a second process calling it
meanwhile blocks, then finds ``pretrained_encoder.pth`` and returns it without training.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from nnunetv2_glrp.pretraining.checkpoint import file_lock
from nnunetv2_glrp.pretraining.config import PretrainingConfig, make_config
from nnunetv2_glrp.pretraining.loop import ENCODER, run_pretraining

logger = logging.getLogger(__name__)


def _dataset_name(dataset_name_or_id: str | int) -> str:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    return maybe_convert_to_dataset_name(dataset_name_or_id)


def folder_for_config(dataset_name: str, configuration: str, plans_identifier: str, config: PretrainingConfig) -> Path:
    name = f"{config.method}__{plans_identifier}__{configuration}__{config.digest()}"
    return Path(os.environ["nnUNet_results"]) / dataset_name / "glrp_pretraining" / name


def pretraining_folder(dataset_name_or_id: str | int, configuration: str, method: str = "GLRP",
                       plans_identifier: str = "nnUNetPlans", preset: str = "cpu", seed: int = 0,
                       **overrides) -> Path:
    """Output folder of the pretraining run these arguments define (not created)."""
    config = make_config(method, preset, seed, **overrides)
    return folder_for_config(_dataset_name(dataset_name_or_id), configuration, plans_identifier, config)


def ensure_pretrained(dataset_name_or_id: str | int, configuration: str, method: str = "GLRP",
                      plans_identifier: str = "nnUNetPlans", preset: str = "cpu", device: str = "cpu",
                      seed: int = 0, **overrides) -> Path:
    """Path of ``pretrained_encoder.pth``; runs (or resumes) pretraining only when it is missing."""
    from nnunetv2_glrp.models import load_plans_context

    config = make_config(method, preset, seed, **overrides)
    dataset_name = _dataset_name(dataset_name_or_id)
    folder = folder_for_config(dataset_name, configuration, plans_identifier, config)
    final = folder / ENCODER
    if final.is_file():
        logger.info("reusing %s", final)
        return final
    with file_lock(folder / ".lock"):
        if final.is_file():  # another process finished it while we waited
            logger.info("reusing %s (finished by another process)", final)
            return final
        ctx = load_plans_context(dataset_name, configuration, plans_identifier)
        run_pretraining(ctx, config, folder, device=device)
    return final


def load_pretrained_encoder_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The encoder state dict of a ``pretrained_encoder.pth`` (keys relative to ``network.encoder``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained encoder {path} not found")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    if not isinstance(blob, dict) or "encoder_state_dict" not in blob:
        raise ValueError(f"{path} is not a GLRP pretrained encoder (no 'encoder_state_dict' key)")
    return blob["encoder_state_dict"]
