"""Seeds of a fine-tuning run: read from the environment, applied right before nnU-Net builds the network.

``GLRP_SEED`` (default 0) seeds the k-patient draw and the network's initial weights of every trainer
of the plugin, the control trainer of the benchmark included; ``GLRP_PRETRAIN_SEED`` (default 0) seeds
pretraining. nnU-Net's own ``nnUNetTrainer`` never seeds, so every run of it starts from torch's default
seed: the same initial weights whatever the data. Runs meant to differ in their draw must also differ
in their initialisation, or one lucky (or unlucky) initialisation biases a whole row of a benchmark.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch


def env_seed(name: str, default: int = 0) -> int:
    """Integer value of the environment variable ``name`` (``default`` when unset or empty)."""
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError as err:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from err


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's global generators (the ones nnU-Net's initialisation uses)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
