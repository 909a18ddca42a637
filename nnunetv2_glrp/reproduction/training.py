"""Trainings of a reproduction: one ``nnUNetv2_train`` per (trainer, fold, seed), skipped when finished.

A training is finished when nnU-Net's ``checkpoint_final.pth`` exists in its fold folder; a killed
one (``checkpoint_latest.pth`` only) is resumed with ``--c``. Each runs in a subprocess with
``GLRP_SEED`` = seed and ``nnUNet_results`` = that seed's results tree (``grid.results_root``), its
output appended to ``OUT/logs/<trainer>__fold<F>__seed<S>.log`` (a failure names that file). A
finished folder must record the seed it is used for (``glrp_finetuning.json``, written by every
trainer of the plugin): a folder trained with another ``GLRP_SEED`` is refused, not silently reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from nnunetv2_glrp.reproduction.grid import link_pretraining_cache, results_root

CHECKPOINT = "checkpoint_final.pth"
SETUP_FILE = "glrp_finetuning.json"  # written by finetuning.trainer_base


@dataclass(frozen=True)
class Setting:
    """What every run of one reproduction shares."""

    dataset_id: str  # as given (-d), passed to nnUNetv2_train
    dataset_name: str  # DatasetXXX_Name
    configuration: str
    plans: str
    budget: str
    recipe: str
    device: str
    nnunet_results: Path  # the base results tree (seed 0)
    raw_dataset: Path
    out: Path

    def seed_root(self, seed: int) -> Path:
        return results_root(seed, self.nnunet_results)

    def model_folder(self, trainer: str, fold: int, seed: int) -> Path:
        return self.seed_root(seed) / self.dataset_name / f"{trainer}__{self.plans}__{self.configuration}" / f"fold_{fold}"

    def log_file(self, trainer: str, fold: int, seed: int) -> Path:
        return self.out / "logs" / f"{trainer}__fold{fold}__seed{seed}.log"


def is_trained(setting: Setting, trainer: str, fold: int, seed: int) -> bool:
    return (setting.model_folder(trainer, fold, seed) / CHECKPOINT).is_file()


def check_seed(folder: Path, seed: int) -> None:
    """ValueError naming the file when a finished training did not run at ``GLRP_SEED=seed``."""
    setup = folder / SETUP_FILE
    if not setup.is_file():
        raise ValueError(f"{folder} has a {CHECKPOINT} but no {SETUP_FILE}: cannot tell which GLRP_SEED it was "
                         "trained with; move it away or train it again")
    recorded = json.loads(setup.read_text()).get("seed")
    if recorded != seed:
        raise ValueError(f"{setup} records GLRP_SEED={recorded}, but this folder holds the seed-{seed} run of "
                         f"reproduce (seed S > 0 trains into $nnUNet_results/glrp_seed_S): move it away")


def checkpoint_fingerprint(folder: Path) -> dict:
    """Identity of a finished model: size and modification time of its final checkpoint."""
    stat = (folder / CHECKPOINT).stat()
    return {"checkpoint": os.fspath(folder / CHECKPOINT), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def train(setting: Setting, trainer: str, fold: int, seed: int) -> float:
    """Train (or resume) one model through ``nnUNetv2_train``; returns its wall seconds."""
    from nnunetv2_glrp.environment import nnunet_command

    folder = setting.model_folder(trainer, fold, seed)
    root = setting.seed_root(seed)
    link_pretraining_cache(root, setting.nnunet_results, setting.dataset_name)
    cmd = [nnunet_command("nnUNetv2_train"), setting.dataset_id, setting.configuration, str(fold), "-tr", trainer,
           "-p", setting.plans, "-device", setting.device]
    if (folder / "checkpoint_latest.pth").is_file():
        cmd.append("--c")  # resume a killed training
    env = {**os.environ, "nnUNet_results": os.fspath(root), "GLRP_SEED": str(seed)}
    log = setting.log_file(trainer, fold, seed)
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ GLRP_SEED={seed} nnUNet_results={root} {' '.join(cmd)}\n")
        f.flush()
        done = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise RuntimeError(f"training {trainer} fold {fold} seed {seed} failed (exit {done.returncode}); see {log}")
    if not (folder / CHECKPOINT).is_file():
        raise RuntimeError(f"training {trainer} fold {fold} seed {seed} ended without {folder / CHECKPOINT}; see {log}")
    check_seed(folder, seed)
    return seconds
