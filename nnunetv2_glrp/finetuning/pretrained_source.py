"""Getting the pretrained encoder for a fine-tuning run: once per dataset/plans/config/method/preset.

``ensure_pretrained`` (nnunetv2_glrp.pretraining) runs or resumes pretraining only when its cache
is missing and is lock-file safe for concurrent callers. Under DDP every rank calls it: the first
rank to take the lock pretrains, the others block on the lock file (no NCCL collective, so a long
pretraining cannot hit the process-group timeout) and then reuse the cache; a ``dist.barrier()``
afterwards lines the ranks up before each loads the same file into its unwrapped network.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

logger = logging.getLogger(__name__)


def obtain_pretrained_encoder(
    dataset_name: str,
    configuration: str,
    method: str,
    plans_identifier: str,
    preset: str,
    device: torch.device | str,
    seed: int,
    overrides: dict | None = None,
) -> Path:
    """Path of ``pretrained_encoder.pth`` for ``method``; pretrains first when it is missing."""
    from torch import distributed as dist

    from nnunetv2_glrp.pretraining import ensure_pretrained

    device_name = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    path = Path(ensure_pretrained(
        dataset_name, configuration, method=method, plans_identifier=plans_identifier,
        preset=preset, device=device_name, seed=seed, **(overrides or {}),
    ))
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    if not path.is_file():
        raise FileNotFoundError(f"ensure_pretrained returned {path}, which does not exist")
    return path

