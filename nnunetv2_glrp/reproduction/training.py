"""Trainings of the run engine: one ``nnUNetv2_train`` per (trainer, fold, seed), skipped when finished.

A training is finished when nnU-Net's ``checkpoint_final.pth`` exists in its fold folder; a killed
one (``checkpoint_latest.pth`` only) is resumed with ``--c``. Each runs in a subprocess with
``GLRP_SEED`` = seed, ``nnUNet_results`` = that seed's results tree (``grid.results_root``) and, for
pretrained families when the setting names one, ``GLRP_PRETRAINED_ENCODER``; its output is appended to
``OUT/logs/<trainer>__fold<F>__seed<S>.log`` (a failure names that file). A finished folder must record
the seed (and the named encoder) it is used for in ``glrp_finetuning.json`` (written by every trainer of
the plugin, the control trainer included): a folder trained otherwise is refused, not silently reused.

One training per model folder at a time: the engine holds an exclusive ``flock`` on
``<fold folder>/.glrp_engine_training.lock`` and the ``nnUNetv2_train`` process inherits it, so a training left
running by a killed engine (``kill`` reaches the engine, not its child) keeps the folder locked until it ends; a
second engine then stops with an error naming the folder and the holder, instead of starting a second training
that writes the same checkpoints.

Where the models go: the seed trees of ``nnunet_results``; the pretrained families of a setting with a
named encoder go below ``nnunet_results/glrp_encoder__<the encoder's folder name>`` instead, and those of a
``per-seed`` setting below ``nnunet_results/glrp_per_seed_pretraining``, those of a setting with extra
pretraining pools below ``nnunet_results/glrp__pools__<pool>[+<pool>...]`` (per-seed and pooled:
``glrp_per_seed_pretraining__pools__...``), so rows of different pretrainings never share a model folder, while
the Random and nnU-Net rows (which do not depend on it) are trained once for all.

Pretraining seeds (``registry.PRETRAINING_SEEDS``): ``shared`` (the default, as the paper does) fine-tunes every
seed's pretrained rows from one encoder (``GLRP_PRETRAIN_SEED`` of the environment, default 0); ``per-seed``
gives seed S's pretrained rows an encoder pretrained with ``GLRP_PRETRAIN_SEED=S``, so that each seed also
draws the pretraining, as a user who pretrains once does, and the intervals resampling the seeds include the
pretraining's variance. (On real ACDC two pretrainings of the same preset moved GLRP's mean Dice by 0.021 at
k = 2 and 0.013 at k = 6, more than its effect: docs/budget_study.md.) The encoders share the one cache;
each pretraining seed is its own entry.

Extra pretraining pools (``Setting.extra_pools``, dataset names): the pretrained rows' cached pretraining also
takes the train/val frames of those converted datasets (``GLRP_EXTRA_POOLS`` handed to ``nnUNetv2_train``; its
own cache entry, ``preparation.extra_pools``); a finished folder must record the same pools. Without them the
engine removes a ``GLRP_EXTRA_POOLS`` of its own environment from the trainings', so that what a table
measured is what its output folder says.

Pretraining epochs (``Setting.pretraining_epochs``; None: the budget's preset): the pretrained rows pretrain that
many epochs (``GLRP_PRETRAIN_EPOCHS``, the cache entry of ``nnUNetv2_glrp pretrain --epochs N``), below
``nnunet_results/glrp__pretrain_<N>ep`` (after the per-seed and pools parts when those are set too); handled as
the pools are: the caller's own variable removed otherwise, a finished folder recording other epochs refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from nnunetv2_glrp.postprocessing.trained_models import model_folder
from nnunetv2_glrp.registry import SETUP_FILE, TRAINER_FAMILIES
from nnunetv2_glrp.reproduction.grid import link_pretraining_cache, results_root

CHECKPOINT = "checkpoint_final.pth"
LOCK_FILE = ".glrp_engine_training.lock"
ENCODER_ENV = "GLRP_PRETRAINED_ENCODER"  # finetuning.pretrained_source reads it
POOLS_ENV = "GLRP_EXTRA_POOLS"  # finetuning.pretrained_source reads it
EPOCHS_ENV = "GLRP_PRETRAIN_EPOCHS"  # finetuning.pretrained_source reads it
PRETRAIN_SEED_ENV = "GLRP_PRETRAIN_SEED"  # finetuning.trainer_base reads it
PER_SEED_TREE = "glrp_per_seed_pretraining"
POOLS_TREE_INFIX = "__pools__"
EPOCHS_TREE_INFIX = "__pretrain_"


def _is_pretrained(family: str) -> bool:
    """Whether ``family`` fine-tunes a pretrained encoder (not Random, not nnU-Net's own trainer)."""
    return TRAINER_FAMILIES.get(family) is not None and TRAINER_FAMILIES[family].pretraining is not None


@dataclass(frozen=True)
class Setting:
    """What every run of one engine call shares."""

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
    #: a ``pretrained_encoder.pth`` every pretrained family fine-tunes from (None: the budget's preset cache)
    pretrained_encoder: Path | None = None
    #: "shared": one pretraining for every seed; "per-seed": seed S's pretrained rows from pretraining seed S
    pretraining_seeds: str = "shared"
    #: dataset names (sorted) whose train/val frames the pretrained rows' pretraining adds (``GLRP_EXTRA_POOLS``)
    extra_pools: tuple[str, ...] = ()
    #: pretraining epochs of the pretrained rows instead of the budget's preset's (``GLRP_PRETRAIN_EPOCHS``)
    pretraining_epochs: int | None = None
    #: {(k, seed, fold): fold index of splits_final.json} of the control row (``runner.control_folds``)
    control_folds: dict = field(default_factory=dict, compare=False, hash=False)

    def uses_encoder(self, family: str) -> bool:
        """Whether ``family``'s trainings depend on the named encoder."""
        return self.pretrained_encoder is not None and _is_pretrained(family)

    def pretrains_per_seed(self, family: str) -> bool:
        """Whether ``family``'s trainings at seed S pretrain (or reuse) an encoder of pretraining seed S."""
        return self.pretraining_seeds == "per-seed" and _is_pretrained(family)

    def pretrains_pooled(self, family: str) -> bool:
        """Whether ``family``'s pretraining adds the frames of ``extra_pools``."""
        return bool(self.extra_pools) and _is_pretrained(family) and self.pretrained_encoder is None

    def pretrains_longer(self, family: str) -> bool:
        """Whether ``family``'s pretraining runs ``pretraining_epochs`` instead of the preset's epochs."""
        return self.pretraining_epochs is not None and _is_pretrained(family) and self.pretrained_encoder is None

    def family_base(self, family: str) -> Path:
        if self.uses_encoder(family):
            return self.nnunet_results / f"glrp_encoder__{Path(self.pretrained_encoder).parent.name}"
        tree = PER_SEED_TREE if self.pretrains_per_seed(family) else ""
        if self.pretrains_pooled(family):
            tree = f"{tree or 'glrp'}{POOLS_TREE_INFIX}{'+'.join(self.extra_pools)}"
        if self.pretrains_longer(family):
            tree = f"{tree or 'glrp'}{EPOCHS_TREE_INFIX}{self.pretraining_epochs}ep"
        return self.nnunet_results / tree if tree else self.nnunet_results

    def seed_root(self, seed: int, family: str = "RandomInitTrainer") -> Path:
        return results_root(seed, self.family_base(family))

    def model_folder(self, family: str, trainer: str, fold: int, seed: int) -> Path:
        return model_folder(self.seed_root(seed, family), self.dataset_name, trainer, self.plans, self.configuration,
                            fold)

    def log_file(self, trainer: str, fold: int, seed: int) -> Path:
        return self.out / "logs" / f"{trainer}__fold{fold}__seed{seed}.log"


@dataclass(frozen=True)
class Training:
    """One model: a trainer of a family at one training fold (the control row's own fold) and seed."""

    family: str
    trainer: str
    fold: int
    seed: int


def is_trained(setting: Setting, t: Training) -> bool:
    return (setting.model_folder(t.family, t.trainer, t.fold, t.seed) / CHECKPOINT).is_file()


def done_fraction(setting: Setting, t: Training) -> float:
    """:func:`epochs_done_fraction` of the training's model folder."""
    return epochs_done_fraction(setting.model_folder(t.family, t.trainer, t.fold, t.seed))


def epochs_done_fraction(folder: Path) -> float:
    """Share of its epochs an unfinished training had done when it was killed: the ``current_epoch`` of its
    ``checkpoint_latest.pth`` (the next epoch, where ``--c`` resumes) over ``num_epochs`` of nnU-Net's
    ``debug.json``; 0 for a finished training, one that never saved a checkpoint, or when either file cannot be
    read (it is then counted as a whole training)."""
    import torch

    latest = folder / "checkpoint_latest.pth"
    if (folder / CHECKPOINT).is_file() or not latest.is_file():
        return 0.0
    try:
        epochs = int(json.loads((folder / "debug.json").read_text(encoding="utf-8"))["num_epochs"])
        epoch = int(torch.load(latest, map_location="cpu", weights_only=False, mmap=True)["current_epoch"])
    except (OSError, ValueError, KeyError, RuntimeError, EOFError):
        return 0.0
    return min(max(epoch / epochs, 0.0), 1.0) if epochs > 0 else 0.0


def check_setup(setting: Setting, t: Training) -> None:
    """ValueError naming the file when a finished training did not run at ``GLRP_SEED=seed`` (or, for a
    named encoder, from another encoder)."""
    folder = setting.model_folder(t.family, t.trainer, t.fold, t.seed)
    setup = folder / SETUP_FILE
    if not setup.is_file():
        raise ValueError(f"{folder} has a {CHECKPOINT} but no {SETUP_FILE}: cannot tell which GLRP_SEED it was "
                         "trained with; move it away or train it again")
    record = json.loads(setup.read_text(encoding="utf-8"))
    if record.get("seed") != t.seed:
        raise ValueError(f"{setup} records GLRP_SEED={record.get('seed')}, but this folder holds the seed-{t.seed} "
                         f"run (seed S > 0 trains into <results>/glrp_seed_S): move it away")
    if setting.pretrains_per_seed(t.family) and record.get("pretraining_seed") != t.seed:
        raise ValueError(f"{setup} records pretraining seed {record.get('pretraining_seed')}, but this folder holds "
                         f"the seed-{t.seed} run of a per-seed pretraining (pretraining seed {t.seed}): move it away")
    if _is_pretrained(t.family) and not setting.uses_encoder(t.family):
        pools = sorted(record.get("extra_pools") or [])  # older records: none
        if pools != list(setting.extra_pools):
            raise ValueError(f"{setup} records extra pretraining pools {pools or 'none'}, but this setting's "
                             f"pretraining uses {list(setting.extra_pools) or 'none'}: move it away")
        epochs = record.get("pretraining_epochs")  # None (older records too): the budget's preset's
        if epochs != setting.pretraining_epochs:
            preset = "the budget's preset's"
            raise ValueError(f"{setup} records pretraining epochs {epochs or preset}, but this setting's pretraining "
                             f"runs {setting.pretraining_epochs or preset}: move it away")
    if setting.uses_encoder(t.family):
        wanted, used = Path(setting.pretrained_encoder).resolve(), record.get("pretrained_encoder")
        if used is None or Path(used).resolve() != wanted:
            raise ValueError(f"{setup} was fine-tuned from {record.get('pretrained_encoder')}, not from the named "
                             f"encoder {wanted}: move it away")


def checkpoint_fingerprint(folder: Path) -> dict:
    """Identity of a finished model: size and modification time of its final checkpoint."""
    stat = (folder / CHECKPOINT).stat()
    return {"checkpoint": os.fspath(folder / CHECKPOINT), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


@contextlib.contextmanager
def training_lock(folder: Path, what: str):
    """Exclusive, non-blocking ``flock`` on ``folder / LOCK_FILE``; yields the open descriptor, which the training
    process must inherit (``pass_fds``) so that it keeps the lock if this process dies first. Never unlocked
    explicitly (that would release the child's share too): closing the last descriptor releases it.
    RuntimeError naming the folder and the recorded holder when another process holds it."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = path.read_text(encoding="utf-8", errors="replace").strip() or "a process that recorded nothing"
            raise RuntimeError(f"{what}: {folder} is being trained by another process ({holder}); wait for it to "
                               f"end or stop it, then run again (the lock is {path})") from None
        yield fd
    finally:
        os.close(fd)


def _record_holder(fd: int, text: str) -> None:
    os.ftruncate(fd, 0)
    os.pwrite(fd, text.encode("utf-8"), 0)


def train(setting: Setting, t: Training) -> float:
    """Train (or resume) one model through ``nnUNetv2_train``; returns its wall seconds."""
    from nnunetv2_glrp.environment import nnunet_command

    folder = setting.model_folder(t.family, t.trainer, t.fold, t.seed)
    root = setting.seed_root(t.seed, t.family)
    link_pretraining_cache(root, setting.nnunet_results, setting.dataset_name)
    cmd = [nnunet_command("nnUNetv2_train"), setting.dataset_id, setting.configuration, str(t.fold), "-tr", t.trainer,
           "-p", setting.plans, "-device", setting.device]
    if (folder / "checkpoint_latest.pth").is_file():
        cmd.append("--c")  # resume a killed training
    env = {**os.environ, "nnUNet_results": os.fspath(root), "GLRP_SEED": str(t.seed)}
    env.pop(ENCODER_ENV, None)
    env.pop(POOLS_ENV, None)  # only the setting's pools, never the caller's environment
    if setting.pretrains_pooled(t.family):
        env[POOLS_ENV] = ",".join(setting.extra_pools)
    env.pop(EPOCHS_ENV, None)  # likewise
    if setting.pretrains_longer(t.family):
        env[EPOCHS_ENV] = str(setting.pretraining_epochs)
    if setting.uses_encoder(t.family):
        env[ENCODER_ENV] = os.fspath(Path(setting.pretrained_encoder).resolve())
    if setting.pretrains_per_seed(t.family):
        env[PRETRAIN_SEED_ENV] = str(t.seed)
    log = setting.log_file(t.trainer, t.fold, t.seed)
    log.parent.mkdir(parents=True, exist_ok=True)
    what = f"training {t.trainer} fold {t.fold} seed {t.seed}"
    t0 = time.perf_counter()
    with training_lock(folder, what) as lock, open(log, "a", encoding="utf-8") as f:
        handed = (ENCODER_ENV, PRETRAIN_SEED_ENV, POOLS_ENV, EPOCHS_ENV)
        encoder = "".join(f"{name}={env[name]} " for name in handed if name in env)
        f.write(f"$ GLRP_SEED={t.seed} nnUNet_results={root} {encoder}{' '.join(cmd)}\n")
        f.flush()
        child = subprocess.Popen(cmd, env=env, stdout=f, stderr=subprocess.STDOUT, pass_fds=(lock,))
        _record_holder(lock, f"nnUNetv2_train pid {child.pid} started by engine pid {os.getpid()} at "
                             f"{time.strftime('%Y-%m-%d %H:%M:%S')}, log {log}")
        returncode = child.wait()
    seconds = time.perf_counter() - t0
    if returncode != 0:
        raise RuntimeError(f"{what} failed (exit {returncode}); see {log}")
    if not (folder / CHECKPOINT).is_file():
        raise RuntimeError(f"{what} ended without {folder / CHECKPOINT}; see {log}")
    check_setup(setting, t)
    return seconds
