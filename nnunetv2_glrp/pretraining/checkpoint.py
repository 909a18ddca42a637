"""Atomic writes, the resumable training checkpoint and the lock that serialises concurrent runs."""

from __future__ import annotations

import contextlib
import fcntl
import os
import random
from pathlib import Path
from typing import Iterator

import numpy as np
import torch


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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``path`` (blocks until the holder releases it, e.g. by exiting or dying)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)
