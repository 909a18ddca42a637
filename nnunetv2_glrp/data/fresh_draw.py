"""The position-stratified sampler's draw in O(slices of the patients already drawn), not O(slices in the bin).

``PositionStratifiedSampler.sample`` picks, in a bin's candidate array, a uniformly random slice of a patient not
yet in the batch (``fresh = candidates[~isin(patient_ids[candidates], used)]``, then ``fresh[rng.integers(len(fresh))]``,
or any candidate when no fresh one is left). Done literally that scans the whole bin for every pick: ~1/B of the
pool, so at UK Biobank scale (tens of millions of slices) seconds per batch. :class:`FreshDraw` returns the same
index from the same ``rng`` call without the scan: per bin, the candidate positions sorted (stably) by patient
give the positions of the used patients' slices (at most a batch of patients), so ``len(fresh)`` is the bin size
minus their count and the k-th fresh candidate is the k-th position not among them.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


class FreshDraw:
    """Draws of "a random candidate of a patient not in ``used``" for fixed candidate arrays (one per bin)."""

    def __init__(self, candidates: Sequence[np.ndarray], patient_ids: np.ndarray):
        self.candidates = [np.asarray(c, dtype=np.int64) for c in candidates]
        self.patient_ids = np.asarray(patient_ids)
        self._sorted: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _by_patient(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(patients of bin ``b``'s candidates sorted, their positions in the candidate array), built lazily."""
        if b not in self._sorted:
            patients = self.patient_ids[self.candidates[b]]
            order = np.argsort(patients, kind="stable")
            self._sorted[b] = (patients[order], order)
        return self._sorted[b]

    def draw(self, b: int, used: set[int], rng: np.random.Generator) -> int:
        """The index ``candidates[b]`` gives for a uniform draw over its candidates of patients not in ``used``
        (over all its candidates when none is left): exactly what the literal ``isin`` filter draws."""
        candidates = self.candidates[b]
        excluded = np.zeros(0, dtype=np.int64)
        if used:
            patients, order = self._by_patient(b)
            keys = np.fromiter(used, dtype=patients.dtype, count=len(used))
            lo, hi = np.searchsorted(patients, keys, "left"), np.searchsorted(patients, keys, "right")
            excluded = np.sort(np.concatenate([order[s:e] for s, e in zip(lo, hi)]))
        n_fresh = len(candidates) - len(excluded)
        if n_fresh == 0:
            return int(candidates[rng.integers(len(candidates))])
        k = int(rng.integers(n_fresh))
        # k-th position not in ``excluded``: excluded[t] - t positions are free before excluded[t]
        j = int(np.searchsorted(excluded - np.arange(len(excluded)), k, side="right"))
        return int(candidates[k + j])
