"""GCL's batches (Chaitanya et al. 2020, strategy G^D): several volumes x one slice per position partition.

Each volume (one preprocessed case: a labeled ED/ES frame or an unlabeled cine frame) is cut into
``n_partitions`` runs of consecutive slices of its ORIGINAL stack (slice n of m, counted from the base:
partition ``(n - 1) * P // m``, so cropped volumes keep the partitions of their full stack). A batch of
``batch_size = V * P`` slices holds V distinct volumes, of distinct patients where the data has enough,
and one random slice of each partition of each: the slices of one partition in different volumes are
GCL's positives (besides the other view). Volumes lacking a slice in some partition (stacks shorter than
P, or cropped) are never drawn. Layout: volume-major, ``[v0 p0, v0 p1, ..., v1 p0, ...]``.

Differences from the original sampler: it draws its volumes at random for every batch (seeded
``rng``) over all frames of the train/val patients, where the original iterates over a fixed volume
list; its partitions follow the stack positions n / m, the original's the indices of the cropped volume.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import numpy as np

from nnunetv2_glrp.data.slice_index import SliceRecord


def volume_partition(n: int, m: int, n_partitions: int) -> int:
    """0-based partition of slice ``n`` (1-based from the base) of an ``m``-slice stack cut into equal runs."""
    if not 1 <= n <= m:
        raise ValueError(f"slice {n} outside a stack of {m} slices")
    return (n - 1) * n_partitions // m


class VolumePartitionSampler:
    """Draws record indices: ``batch_size // n_partitions`` volumes x one slice per partition."""

    def __init__(self, records: Sequence[SliceRecord], batch_size: int, n_partitions: int = 4):
        if n_partitions < 1 or batch_size < n_partitions or batch_size % n_partitions:
            raise ValueError(f"GCL batches hold whole volumes: batch size {batch_size} must be a positive multiple "
                             f"of the number of partitions {n_partitions}")
        self.batch_size, self.n_partitions = batch_size, n_partitions
        self.n_volumes = batch_size // n_partitions
        parts: dict[tuple[str, str], list[list[int]]] = defaultdict(lambda: [[] for _ in range(n_partitions)])
        patient: dict[tuple[str, str], str] = {}
        for i, r in enumerate(records):
            parts[(r.folder, r.case)][self.partition(r)].append(i)
            patient[(r.folder, r.case)] = r.patient
        volumes = sorted(v for v, p in parts.items() if all(p))
        if len(volumes) < self.n_volumes:
            raise ValueError(f"GCL needs {self.n_volumes} volumes with slices in all {n_partitions} partitions per "
                             f"batch, but only {len(volumes)} of the {len(parts)} volumes have them")
        self.volume_parts = [parts[v] for v in volumes]
        self.volume_patient = [patient[v] for v in volumes]

    def partition(self, record: SliceRecord) -> int:
        return volume_partition(record.n, record.m, self.n_partitions)

    def _volumes(self, rng: np.random.Generator) -> list[int]:
        """V distinct volumes in random order, distinct patients first."""
        order = [int(v) for v in rng.permutation(len(self.volume_parts))]
        chosen, patients = [], set()
        for v in order:
            if self.volume_patient[v] not in patients:
                chosen.append(v)
                patients.add(self.volume_patient[v])
        chosen += [v for v in order if v not in chosen]
        return chosen[: self.n_volumes]

    def sample(self, rng: np.random.Generator) -> list[int]:
        return [int(p[rng.integers(len(p))]) for v in self._volumes(rng) for p in self.volume_parts[v]]
