"""Atomic writes, the resumable training checkpoint, the final encoder file and the lock that serialises
concurrent runs.

Checkpoint (``checkpoint_latest.pth``): epoch, encoder and heads weights, optimizer, scheduler, the fp16 gradient
scaler (``scaler``: its state_dict, None without fp16), RNG states, per-epoch statistics (``history``), config and the
digest of the data it was trained on. Final encoder
(``pretrained_encoder.pth``): ``encoder_state_dict`` (keys relative to ``network.encoder``), method, config,
plans identifier, configuration and network class.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from nnunetv2_glrp.torch_files import load_torch_file


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp{os.getpid()}")


def atomic_torch_save(obj, path: Path) -> None:
    """``torch.save`` to a temporary name beside ``path``, fsync, then ``os.replace``: a kill mid-write
    leaves the previous file intact."""
    path = Path(path)
    tmp = _tmp_name(path)
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_epoch(seed: int, epoch: int) -> np.random.SeedSequence:
    """Seed torch, numpy and python RNGs from (seed, epoch); return the epoch's SeedSequence for the data.

    Seeding per epoch makes every epoch a function of (seed, epoch, weights at its start), so a run
    resumed from the checkpoint of epoch e continues exactly as the uninterrupted run."""
    ss = np.random.SeedSequence([int(seed), int(epoch)])
    s = ss.generate_state(3)
    torch.manual_seed(int(s[0]))
    np.random.seed(int(s[1]))
    random.seed(int(s[2]))
    return ss


def load_checkpoint(path: Path, data_digest: str, device: torch.device) -> dict | None:
    """The checkpoint at ``path`` (None when there is none); ValueError when it was trained on other data
    (a run never resumes weights trained on patients that are not in its split any more)."""
    path = Path(path)
    if not path.is_file():
        return None
    ckpt = load_torch_file(path, "pretraining checkpoint", map_location=device)
    if ckpt.get("data_digest") != data_digest:
        raise ValueError(f"{path.parent}: its checkpoint was trained on data with digest {ckpt.get('data_digest')}, "
                         f"the dataset now gives {data_digest} (re-converted or re-split?); delete {path.parent} to "
                         f"pretrain again")
    return ckpt


def save_checkpoint(path: Path, epoch: int, network, heads, optimizer, scheduler, history: dict, config,
                    data_digest: str, scaler=None) -> None:
    """Atomically write the state after ``epoch`` (0-based), the RNG states of this moment included."""
    atomic_torch_save({"epoch": epoch, "encoder": network.encoder.state_dict(), "heads": heads.state_dict(),
                       "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                       "scaler": None if scaler is None else scaler.state_dict(),
                       "rng": rng_state(), "history": history, "config": config.to_dict(),
                       "data_digest": data_digest}, path)


def restore_checkpoint(ckpt: dict, network, heads, optimizer, scheduler, scaler=None) -> tuple[dict, int]:
    """Load ``ckpt`` into the models, optimizer, scheduler, gradient scaler and RNGs; return (history, first epoch to
    run). A checkpoint without a scaler state (written before fp16 existed, or by a run without it) leaves ``scaler``
    fresh (initial scale 2**16)."""
    network.encoder.load_state_dict(ckpt["encoder"])
    heads.load_state_dict(ckpt["heads"])
    optimizer.load_state_dict(ckpt["optimizer"])
    scheduler.load_state_dict(ckpt["scheduler"])
    if scaler is not None and ckpt.get("scaler"):
        scaler.load_state_dict(ckpt["scaler"])
    set_rng_state(ckpt["rng"])
    return ckpt["history"], ckpt["epoch"] + 1


def save_pretrained_encoder(path: Path, network, config, ctx) -> None:
    """Atomically write the final ``pretrained_encoder.pth`` of a run on ``ctx`` (a ``PlansContext``)."""
    atomic_torch_save({"encoder_state_dict": network.encoder.state_dict(), "method": config.method,
                       "config": config.to_dict(), "plans_identifier": ctx.plans_identifier,
                       "configuration": ctx.configuration,
                       "network_class": ctx.configuration_manager.network_arch_class_name}, path)


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (blocks until the holder releases it, e.g. by exiting or dying)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+", encoding="utf-8") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
