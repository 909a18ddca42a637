"""Pretraining batches: N slices mixed over patients and positions, two augmented views each.

Sampling (seeded, our choice where the paper is silent): the position range (0, 1] is cut into N equal
bins; each batch visits the bins in a random order and draws, from each bin, a random slice of a patient
not yet in the batch when the bin has one (any slice of the bin otherwise; any slice at all when the bin
is empty). A batch therefore spans base to apex and mixes patients, which is what the relative-position
losses contrast. Batch layout: ``data`` [2N, C, H, W] = first views of the N slices, then their second
views; ``positions`` [2N]; ``psm`` [g^2 2N, g^2 2N] the patch SSIM matrix of the views on the g x g grid (patch
index = view * g^2 + row-major cell), computed here, in the data workers, so the training step does not pay for it.
"""

from __future__ import annotations

import random
import time
from typing import Callable, Sequence

import numpy as np
import torch
from batchgenerators.dataloading.data_loader import SlimDataLoaderBase

from nnunetv2_glrp.data.augmentation import ViewAugmentation, build_view_transform
from nnunetv2_glrp.data.fresh_draw import FreshDraw
from nnunetv2_glrp.data.reading import read_slice
from nnunetv2_glrp.data.lean_index import SliceIndex, record_patient_codes, record_positions
from nnunetv2_glrp.data.slice_index import SliceRecord


class PositionStratifiedSampler:
    """Draws batches of record indices stratified over position bins, patients distinct where possible."""

    def __init__(self, records: Sequence[SliceRecord], batch_size: int):
        if batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        positions = record_positions(records)  # arrays straight from a SliceIndex: no record per slice
        self.bins = np.minimum((positions * batch_size).astype(int), batch_size - 1)
        self.patient_ids = record_patient_codes(records)
        self.by_bin = [np.flatnonzero(self.bins == b) for b in range(batch_size)]
        self.n = len(records)
        # the draw below without scanning the bin (data/fresh_draw.py); candidate array batch_size: every slice
        self._draw = FreshDraw(self.by_bin + [np.arange(self.n)] * (not all(map(len, self.by_bin))), self.patient_ids)

    def sample(self, rng: np.random.Generator) -> list[int]:
        used: set[int] = set()
        picks = []
        for b in rng.permutation(self.batch_size):
            # a random slice of the bin of a patient not yet used (any slice of the bin when none is left;
            # any slice at all when the bin is empty)
            i = self._draw.draw(int(b) if len(self.by_bin[b]) else self.batch_size, used, rng)
            picks.append(i)
            used.add(int(self.patient_ids[i]))
        return picks


def epoch_data_seed(seed: int, epoch: int) -> int:
    """The data loader's seed of ``epoch`` of a run seeded ``seed`` (a word of SeedSequence([seed, epoch]))."""
    return int(np.random.SeedSequence([int(seed), int(epoch)]).generate_state(4)[3])


class PretrainingSliceLoader(SlimDataLoaderBase):
    """Infinite batches for GLRP pretraining (batchgenerators data loader, usable in nnU-Net's augmenters).

    ``psm_fn`` maps views [V, H, W] to the [g^2 V, g^2 V] PSM; None skips the PSM (global-only methods).
    ``sampler``: draws a batch's record indices from a seeded generator (``sample(rng)``); None: the
    :class:`PositionStratifiedSampler`. A sampler with a ``partition(record)`` method (GCL's
    ``VolumePartitionSampler``) adds ``partitions`` [2N] (int64) to the batch.

    Seeding: without ``iterations_per_epoch`` one stream seeded by (seed, thread id). With it, the loader
    serves a whole run from ``first_epoch`` on: every ``iterations_per_epoch`` batches it reseeds its
    sampler from (``epoch_data_seed(seed, epoch)``, thread id), so the batches of an epoch depend on
    (seed, epoch) only, and one loader (one set of augmentation workers) can serve all epochs while a
    resumed run still draws the same batches as an uninterrupted one (single-threaded loading). The augmentation
    draws from the process's global RNGs, reseeded before each slice from (a word the sampler's generator draws per
    batch, the slice's place in the global batch): a slice's views do not depend on which rank augments them.

    ``shard`` (rank, world size): the sampler draws a global batch of ``batch_size * world`` slices (the default
    sampler is built for that size; a given one must draw it) and this loader keeps the contiguous share of
    ``rank``; every rank's loader has the same seed, so the ranks' shares are disjoint parts of one global draw
    (see ``pretraining.distributed``)."""

    def __init__(self, records: Sequence[SliceRecord], batch_size: int, patch_size: Sequence[int], seed: int,
                 augmentation: ViewAugmentation = ViewAugmentation(),
                 psm_fn: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 iterations_per_epoch: int | None = None, first_epoch: int = 0, sampler=None,
                 shard: tuple[int, int] = (0, 1)):
        super().__init__(records if isinstance(records, SliceIndex) else list(records), batch_size, None)
        self.rank, self.world = (int(v) for v in shard)
        if not 0 <= self.rank < self.world:
            raise ValueError(f"shard {shard}: the rank must lie in [0, world size)")
        self.patch_size = tuple(int(p) for p in patch_size)
        self.seed = int(seed)
        self.sampler = PositionStratifiedSampler(self._data, batch_size * self.world) if sampler is None else sampler
        self.transform = build_view_transform(self.patch_size, augmentation)
        self.psm_fn = psm_fn
        self.iterations_per_epoch = iterations_per_epoch
        self.first_epoch = int(first_epoch)
        self._batches = 0
        self._rng: np.random.Generator | None = None
        self._rng_epoch: int | None = None

    @property
    def rng(self) -> np.random.Generator:
        """The sampler's generator for the next batch (the current epoch's, see the class docstring)."""
        epoch = None
        if self.iterations_per_epoch is not None:
            epoch = self.first_epoch + self._batches // self.iterations_per_epoch
        if self._rng is None or epoch != self._rng_epoch:  # lazily: set_thread_id runs after construction
            seed = self.seed if epoch is None else epoch_data_seed(self.seed, epoch)
            self._rng, self._rng_epoch = np.random.default_rng([seed, self.thread_id]), epoch
        return self._rng

    def generate_train_batch(self) -> dict:
        drawn = self.sampler.sample(self.rng)
        if len(drawn) != self.batch_size * self.world:
            raise ValueError(f"the sampler drew {len(drawn)} slices, a global batch of {self.batch_size} x "
                             f"{self.world} ranks was expected")
        start = self.rank * self.batch_size
        picks = [self._data[i] for i in drawn[start:start + self.batch_size]]
        batch_word = int(self.rng.integers(2 ** 63))
        self._batches += 1
        first, second = [], []
        with torch.no_grad():
            for j, r in enumerate(picks):
                _seed_augmentation(batch_word, start + j)
                img = torch.from_numpy(read_slice(r.folder, r.case, r.slice_index))
                first.append(self.transform(image=img)["image"])
                second.append(self.transform(image=img.clone())["image"])
            data = torch.stack(first + second).float()
            positions = torch.tensor([r.position for r in picks] * 2, dtype=torch.float32)
            psm, psm_seconds = None, 0.0
            if self.psm_fn is not None:
                t0 = time.perf_counter()
                psm = self.psm_fn(data[:, 0])
                psm_seconds = time.perf_counter() - t0
        batch = {"data": data, "positions": positions, "psm": psm, "psm_seconds": psm_seconds,
                 "keys": [(r.case, r.slice_index) for r in picks]}
        if hasattr(self.sampler, "partition"):
            batch["partitions"] = torch.tensor([self.sampler.partition(r) for r in picks] * 2, dtype=torch.long)
        return batch


def _seed_augmentation(batch_word: int, slice_in_batch: int) -> None:
    """Seed the global RNGs the augmentation draws from (numpy, torch, python) for one slice of a batch."""
    words = np.random.SeedSequence([batch_word, slice_in_batch]).generate_state(3)
    np.random.seed(int(words[0]))
    torch.manual_seed(int(words[1]))
    random.seed(int(words[2]))


def make_augmenter(loader: PretrainingSliceLoader, num_processes: int, seeds: Sequence[int]):
    """nnU-Net's choice: ``SingleThreadedAugmenter`` when no worker processes (``nnUNet_n_proc_DA=0``),
    else ``NonDetMultiThreadedAugmenter`` (batch order then depends on worker timing: only the
    single-threaded path is bitwise reproducible)."""
    if num_processes == 0:
        from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter

        return SingleThreadedAugmenter(loader, None)
    from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter

    return NonDetMultiThreadedAugmenter(loader, None, num_processes, num_cached=max(2, num_processes),
                                        seeds=list(seeds)[:num_processes], pin_memory=torch.cuda.is_available(),
                                        wait_time=0.002)
