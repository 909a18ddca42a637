"""Building an nnU-Net trainer in-process on the session phantom (Dataset901_ACDC), as nnUNetv2_train does."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import numpy as np
import torch


def build_started_trainer(cls: type, config: str, fold: int = 0):
    """``cls`` on the session phantom's plans, seeded (random, numpy, torch = 0), initialised and started."""
    base = Path(os.environ["nnUNet_preprocessed"]) / "Dataset901_ACDC"
    plans = json.loads((base / "nnUNetPlans.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False  # what nnUNetv2_train adds before building a trainer
    dataset_json = json.loads((base / "dataset.json").read_text(encoding="utf-8"))
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    trainer = cls(plans, config, fold, dataset_json, torch.device("cpu"))
    trainer.initialize()
    trainer.on_train_start()
    return trainer
