"""The unlabeled batches of a ``_semi`` run: the pool, one seeded batch per iteration, a background thread.

Pool: the preprocessed unlabeled cine frames (``<data_identifier>_unlabeled``, nnunetv2_glrp.preparation.unlabeled)
of the TRAIN and VAL patients of ``glrp_split.json`` (the pretraining pool's unlabeled half, indexed with
:func:`nnunetv2_glrp.data.slice_index.index_unlabeled_folder`; a test patient is never indexed and is asserted
absent). The frames that ARE this run's labeled training cases (unlabeled frame of the same patient and phase,
ED/ES) are left out, so an unlabeled batch never repeats a labeled slice; only when the rest is smaller than one
unlabeled batch are they kept (``labeled_frames_kept``, logged by the trainer). DDP: rank r of w uses the sorted
pool's slices r, r + w, ... (its own shard; the whole pool when the shard would be empty).

Batch g (the run's global iteration) depends on (config seed, GLRP_SEED, rank, g) only: the slices are drawn
without replacement (with replacement only when the pool is smaller than the batch), then the weak view, two
strong views and two CutMix boxes are drawn from the same generator (finetuning.strong_augmentation). A resumed
run therefore sees the same stream as an uninterrupted one. :class:`UnlabeledStream` builds batches g, g + 1, ...
in a daemon thread, ``prefetch`` ahead, like nnU-Net's background augmentation (not in the training step).
"""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from nnunetv2_glrp.data.reading import read_slice
from nnunetv2_glrp.data.slice_index import SliceRecord, index_unlabeled_folder
from nnunetv2_glrp.finetuning.semi_config import SemiSupervisedConfig
from nnunetv2_glrp.finetuning.semi_supervised import batch_partner, cutmix
from nnunetv2_glrp.finetuning.strong_augmentation import cutmix_box, strong_view, weak_view


@dataclass(frozen=True)
class UnlabeledPool:
    records: tuple[SliceRecord, ...]
    patients: tuple[str, ...]
    labeled_frames_kept: bool  # the pool without the labeled frames was too small: they are in it
    excluded_slices: int  # slices of labeled frames left out


def _frame_key(split: dict, case: str) -> tuple[str, str] | None:
    info = split["cases"].get(case, {})
    return (info["patient"], info["phase"]) if info.get("phase") else None


def build_unlabeled_pool(unlabeled_folder: Path, split: dict, labeled_cases: Sequence[str], batch_size: int,
                         rank: int = 0, world_size: int = 1) -> UnlabeledPool:
    """This rank's unlabeled slices (see the module docstring). FileNotFoundError/ValueError (from the index)
    name the folder or case; ValueError when train/val patients have no unlabeled frame at all."""
    if not Path(unlabeled_folder).is_dir():
        raise FileNotFoundError(f"unlabeled preprocessed folder {unlabeled_folder} not found: the _semi recipe "
                                "trains on the unlabeled cine frames; run `nnUNetv2_glrp prepare` first")
    records = sorted(index_unlabeled_folder(Path(unlabeled_folder), split, fix="run `nnUNetv2_glrp prepare`"),
                     key=lambda r: (r.case, r.slice_index))
    if not records:
        raise ValueError(f"{unlabeled_folder}: no unlabeled frame of a train/val patient; the _semi recipe needs some")
    test = set(split["test"])
    assert not {r.patient for r in records} & test, "test patient in the unlabeled pool"
    labeled = {key for case in labeled_cases if (key := _frame_key(split, case)) is not None}
    free = [r for r in records if _frame_key(split, r.case) not in labeled]
    shard = free[rank::world_size] or free
    kept = len(shard) < batch_size
    if kept:
        shard = records[rank::world_size] or records
    return UnlabeledPool(tuple(shard), tuple(sorted({r.patient for r in shard})), kept,
                         0 if kept else len(records) - len(free))


def batch_generator(cfg: SemiSupervisedConfig, run_seed: int, rank: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(cfg.seed), int(run_seed), int(rank), int(index)])


def make_batch(records: Sequence[SliceRecord], index: int, batch_size: int, patch_size: Sequence[int],
               cfg: SemiSupervisedConfig, run_seed: int, rank: int = 0) -> dict:
    """Unlabeled batch ``index``: ``weak`` [B, C, Y, X], ``strong`` two [B, C, Y, X] (CutMixed within the batch
    with ``boxes`` [2, B, Y, X] bool and ``partner`` [B]), ``slices`` [(case, slice index)], ``index``."""
    rng = batch_generator(cfg, run_seed, rank, index)
    picks = rng.choice(len(records), size=batch_size, replace=len(records) < batch_size)
    chosen = [records[int(i)] for i in picks]
    weak = torch.stack([weak_view(read_slice(r.folder, r.case, r.slice_index), patch_size, cfg, rng) for r in chosen])
    partner = batch_partner(batch_size)
    strong, boxes = [], []
    for _ in range(2):
        views = torch.stack([strong_view(w, cfg, rng) for w in weak])
        box = torch.from_numpy(np.stack([cutmix_box(patch_size, cfg, rng) for _ in range(batch_size)]))
        strong.append(cutmix(views, box, partner))
        boxes.append(box)
    return {"weak": weak, "strong": strong, "boxes": torch.stack(boxes), "partner": partner,
            "slices": [(r.case, r.slice_index) for r in chosen], "index": index}


class UnlabeledStream:
    """Batches ``first, first + 1, ...`` of :func:`make_batch`, built ahead in a daemon thread."""

    def __init__(self, records: Sequence[SliceRecord], batch_size: int, patch_size: Sequence[int],
                 cfg: SemiSupervisedConfig, run_seed: int, rank: int = 0):
        self.args = (tuple(records), batch_size, tuple(patch_size), cfg, run_seed, rank)
        self.prefetch = cfg.prefetch
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue()
        self.next_index: int | None = None

    def _work(self, first: int, stop: threading.Event, out: queue.Queue) -> None:
        index = first
        while not stop.is_set():
            try:
                item = make_batch(self.args[0], index, *self.args[1:])
            except BaseException as exc:  # handed to the consumer, which raises it
                item = exc
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException):
                return
            index += 1

    def start(self, first: int) -> None:
        """(Re)start the stream at batch ``first`` (unless it is already there)."""
        if self._thread is not None and self.next_index == first:
            return
        self.close()
        self._stop = threading.Event()
        self._queue = queue.Queue(maxsize=self.prefetch)
        self._thread = threading.Thread(target=self._work, args=(first, self._stop, self._queue), daemon=True,
                                        name="glrp-unlabeled-stream")
        self._thread.start()
        self.next_index = first

    def next(self) -> dict:
        if self._thread is None:
            raise RuntimeError("unlabeled stream not started")
        item = self._queue.get()
        if isinstance(item, BaseException):
            raise RuntimeError(f"building unlabeled batch {self.next_index} failed: {item}") from item
        assert item["index"] == self.next_index, (item["index"], self.next_index)
        self.next_index += 1
        return item

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self._thread = None
