"""A fake ``nnUNetv2_train`` for the run engine's tests: it records what the engine handed it (``GLRP_SEED``,
``GLRP_PRETRAIN_SEED`` (default 0), the pools of ``GLRP_EXTRA_POOLS`` and ``GLRP_PRETRAIN_EPOCHS``) in
``glrp_finetuning.json`` where nnU-Net would train, and writes a ``checkpoint_final.pth``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from nnunetv2_glrp.reproduction.training import Setting, Training, train

FAKE_TRAIN = """\
import json, os, pathlib, sys
dataset, configuration, fold, trainer = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
folder = (pathlib.Path(os.environ["nnUNet_results"]) / "Dataset001_X" / f"{trainer}__nnUNetPlans__{configuration}"
          / f"fold_{fold}")
folder.mkdir(parents=True, exist_ok=True)
pools = sorted(p for p in os.environ.get("GLRP_EXTRA_POOLS", "").split(",") if p)
record = {"seed": int(os.environ["GLRP_SEED"]), "pretraining_seed": int(os.environ.get("GLRP_PRETRAIN_SEED", 0)),
          "extra_pools": pools, "pretraining_epochs": int(os.environ.get("GLRP_PRETRAIN_EPOCHS", 0)) or None}
(folder / "glrp_finetuning.json").write_text(json.dumps(record))
(folder / "checkpoint_final.pth").write_bytes(b"fake")
"""

GLRP = ("GLRPTrainer", "GLRPTrainer_k2_cpu")
RANDOM = ("RandomInitTrainer", "RandomInitTrainer_k2_cpu")


def install_fake_train(tmp_path: Path, monkeypatch) -> None:
    """Make the engine start the fake instead of nnU-Net's ``nnUNetv2_train``."""
    fake = tmp_path / "nnUNetv2_train"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_TRAIN)
    fake.chmod(0o755)
    monkeypatch.setattr("nnunetv2_glrp.environment.nnunet_command", lambda name: os.fspath(fake))


def engine_setting(base: Path, mode: str = "shared", pools: tuple[str, ...] = (), epochs: int | None = None) -> Setting:
    """The setting of dataset ``Dataset001_X`` with its results tree, raw folder and output folder under ``base``."""
    return Setting("1", "Dataset001_X", "2d", "nnUNetPlans", "cpu", "nnunet", "cpu", base / "results", base,
                   base / "out", None, mode, pools, epochs)


def recorded(setting: Setting, family: tuple[str, str], seed: int) -> tuple[Path, dict]:
    """(model folder, its ``glrp_finetuning.json``) of ``family`` at fold 0 and ``seed``."""
    folder = setting.model_folder(*family, 0, seed)
    return folder, json.loads((folder / "glrp_finetuning.json").read_text())


def write_finished_folder(setting: Setting, family: tuple[str, str], seed: int, record: dict) -> None:
    """A finished model folder of ``family`` at fold 0 and ``seed`` whose ``glrp_finetuning.json`` is ``record``."""
    folder = setting.model_folder(*family, 0, seed)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "glrp_finetuning.json").write_text(json.dumps(record))
    (folder / "checkpoint_final.pth").write_bytes(b"fake")


def train_all(settings: tuple[Setting, ...], seeds: tuple[int, ...] = (0, 2)) -> None:
    """Train GLRP and RANDOM at fold 0 for every setting and seed through the engine, skipping finished folders
    (settings that share a model folder, e.g. Random's, train it once)."""
    for seed in seeds:
        for setting in settings:
            for family in (GLRP, RANDOM):
                if not (setting.model_folder(*family, 0, seed) / "checkpoint_final.pth").is_file():
                    train(setting, Training(*family, 0, seed))
