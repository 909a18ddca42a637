"""Strict loading of a pretrained encoder state dict into an nnU-Net network.

nnU-Net's own ``-pretrained_weights`` expects a whole-network checkpoint; our pretraining writes the
encoder only (keys relative to ``network.encoder``, projection heads dropped), so this loader checks
the keys itself: any missing, unexpected or shape-mismatched tensor is an error that names the file
and the keys, never a silent partial load. The decoder and the segmentation layers keep their fresh
initialisation.
"""

from __future__ import annotations

import logging
from typing import Mapping

import torch
from torch import nn

logger = logging.getLogger(__name__)


def unwrap_network(network: nn.Module) -> nn.Module:
    """The plain module under DDP (``.module``) and ``torch.compile`` (``._orig_mod``) wrappers."""
    module = network
    for _ in range(4):
        if isinstance(module, nn.parallel.DistributedDataParallel) or type(module).__name__ == "DataParallel":
            module = module.module
        elif hasattr(module, "_orig_mod"):
            module = module._orig_mod
        else:
            break
    return module


def _show(keys: list[str], limit: int = 8) -> str:
    head = ", ".join(keys[:limit])
    return head + (f", ... ({len(keys)} in all)" if len(keys) > limit else "")


def check_encoder_state(encoder: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming ``source`` if ``state`` does not match ``encoder`` key for key, shape for shape."""
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in set(own) & set(state)
        if tuple(state[key].shape) != tuple(own[key].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing encoder tensors: {_show(missing)}")
    if unexpected:
        problems.append(f"unexpected tensors (not in network.encoder): {_show(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches (file vs network): {_show(mismatched)}")
    if problems:
        raise ValueError(
            f"pretrained encoder {source} does not fit this network (was it pretrained with another "
            f"plans/configuration?): " + "; ".join(problems)
        )


def load_encoder_state(network: nn.Module, state: Mapping[str, torch.Tensor], source: str = "<state dict>") -> int:
    """Copy ``state`` into ``network.encoder`` (strict); return the number of tensors loaded."""
    module = unwrap_network(network)
    encoder = getattr(module, "encoder", None)
    if encoder is None:
        raise ValueError(f"cannot load {source}: network {type(module).__name__} has no .encoder")
    check_encoder_state(encoder, state, source)
    device_state = {key: value.detach() for key, value in state.items()}
    encoder.load_state_dict(device_state, strict=True)
    n_params = sum(1 for _ in encoder.parameters())
    logger.info("loaded %d encoder tensors (%d parameters, %d buffers) from %s",
                len(state), n_params, len(state) - n_params, source)
    return len(state)

