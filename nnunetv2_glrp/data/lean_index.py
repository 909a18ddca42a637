"""The pretraining slice index as a few numpy arrays: no Python object per slice.

:class:`SliceIndex` is a read-only ``Sequence[SliceRecord]``: ``index[i]`` builds the :class:`SliceRecord` of
slice ``i`` on demand, so the loader and the samplers keep their record interface, while what every data
worker holds (forked or pickled) is per CASE: name, patient, kind, folder, crop start, stack size ``m``
(strings in fixed-width numpy arrays), and per SLICE only two int32 (its case, its index along axis 0). At the
scale of UK Biobank (~37 M slices) that is ~300 MB, against several GB for a list of dataclass records.

:func:`record_positions` and :func:`record_patient_codes` give the samplers their per-slice arrays without
building a record per slice (and still accept a plain list of records).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

KINDS = ("labeled", "unlabeled")


@dataclass(frozen=True)
class SliceRecord:
    folder: str  # preprocessed folder of the case
    case: str
    slice_index: int  # index along axis 0 of the preprocessed array
    n: int  # 1-based position from the base in the original stack
    m: int  # number of slices of the original stack
    patient: str
    kind: str  # "labeled" | "unlabeled"

    @property
    def position(self) -> float:
        return self.n / self.m


class SliceIndex(Sequence):
    """Slices of cases: per-case arrays (``case_*``) and per-slice ``slice_case`` / ``slice_k`` (int32).

    Slice ``i`` is slice ``slice_k[i]`` (axis 0 of the preprocessed array) of case ``slice_case[i]``; its
    1-based position in the original stack is ``n = case_start + slice_k + 1`` of ``m = case_m``."""

    def __init__(self, folders: Sequence[str], case_names, case_patients, case_kinds, case_folders, case_starts,
                 case_ms, slice_case, slice_k):
        self.folders = tuple(str(f) for f in folders)
        self.case_names = np.asarray(case_names, dtype=str)
        self.case_patients = np.asarray(case_patients, dtype=str)
        self.case_kinds = np.asarray(case_kinds, dtype=np.int8)
        self.case_folders = np.asarray(case_folders, dtype=np.int16)
        self.case_starts = np.asarray(case_starts, dtype=np.int32)
        self.case_ms = np.asarray(case_ms, dtype=np.int32)
        self.slice_case = np.asarray(slice_case, dtype=np.int32)
        self.slice_k = np.asarray(slice_k, dtype=np.int32)
        n_cases = len(self.case_names)
        if not all(len(a) == n_cases for a in (self.case_patients, self.case_kinds, self.case_folders,
                                               self.case_starts, self.case_ms)):
            raise ValueError("SliceIndex: per-case arrays of different lengths")
        if len(self.slice_case) != len(self.slice_k):
            raise ValueError("SliceIndex: per-slice arrays of different lengths")

    @classmethod
    def empty(cls) -> "SliceIndex":
        return cls((), [], [], [], [], [], [], [], [])

    @classmethod
    def from_cases(cls, folder: str, names, patients, kinds, starts, ms, n_slices) -> "SliceIndex":
        """Every slice of the given cases of one folder, case by case, slices in array order."""
        n_slices = np.asarray(n_slices, dtype=np.int64)
        slice_case = np.repeat(np.arange(len(n_slices), dtype=np.int32), n_slices)
        first = np.concatenate([[0], np.cumsum(n_slices)[:-1]]) if len(n_slices) else np.zeros(0, np.int64)
        slice_k = np.arange(len(slice_case), dtype=np.int64) - np.repeat(first, n_slices)
        return cls((folder,), names, patients, [KINDS.index(k) for k in kinds], np.zeros(len(n_slices)), starts, ms,
                   slice_case, slice_k)

    # --- Sequence ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.slice_case)

    def __getitem__(self, i):
        if isinstance(i, (slice, np.ndarray, list)):
            return self.take(np.arange(len(self))[i] if isinstance(i, slice) else np.asarray(i))
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"slice {i} outside an index of {len(self)} slices")
        c, k = int(self.slice_case[i]), int(self.slice_k[i])
        return SliceRecord(self.folders[int(self.case_folders[c])], str(self.case_names[c]), k,
                           k + int(self.case_starts[c]) + 1, int(self.case_ms[c]), str(self.case_patients[c]),
                           KINDS[int(self.case_kinds[c])])

    def __iter__(self) -> Iterator[SliceRecord]:
        return (self[i] for i in range(len(self)))

    def take(self, indices) -> "SliceIndex":
        """The slices ``indices`` (in that order); the case tables are shared, not copied."""
        indices = np.asarray(indices, dtype=np.int64)
        out = object.__new__(SliceIndex)
        out.__dict__.update(self.__dict__)
        out.slice_case, out.slice_k = self.slice_case[indices], self.slice_k[indices]
        return out

    def __add__(self, other):
        if isinstance(other, SliceIndex):
            return concatenate([self, other])
        return list(self) + list(other)

    def __radd__(self, other):
        return list(other) + list(self)

    def __eq__(self, other) -> bool:
        """Equal to any index, list or tuple holding the same records in the same order (like a list)."""
        if not isinstance(other, (SliceIndex, list, tuple)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other))

    __hash__ = None  # mutable-like sequence semantics, as a list

    def __repr__(self) -> str:
        return f"SliceIndex({len(self)} slices of {len(self.case_names)} cases in {len(self.folders)} folder(s))"

    # --- vectorised fields (per slice) --------------------------------------------------------------------
    @property
    def n(self) -> np.ndarray:
        return self.slice_k.astype(np.int64) + self.case_starts[self.slice_case] + 1

    @property
    def m(self) -> np.ndarray:
        return self.case_ms[self.slice_case].astype(np.int64)

    @property
    def positions(self) -> np.ndarray:
        """n / m of every slice (float64, the same numbers as ``SliceRecord.position``)."""
        return self.n / self.m

    def patient_codes(self) -> np.ndarray:
        """Per slice, the rank of its patient among the sorted distinct patients of the index (int64)."""
        distinct, inverse = np.unique(self.case_patients, return_inverse=True)
        used = np.unique(inverse[self.slice_case])
        remap = np.full(len(distinct), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return remap[inverse[self.slice_case]]

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.case_names, self.case_patients, self.case_kinds, self.case_folders,
                                      self.case_starts, self.case_ms, self.slice_case, self.slice_k))


def concatenate(indices: Sequence[SliceIndex]) -> SliceIndex:
    """One index holding the slices of ``indices`` in order (folders and case tables merged)."""
    indices = [x for x in indices if len(x.case_names)]
    if not indices:
        return SliceIndex.empty()
    folders: list[str] = []
    case_folders, case_offsets, offset = [], [], 0
    for x in indices:
        ids = []
        for f in x.folders:
            if f not in folders:
                folders.append(f)
            ids.append(folders.index(f))
        case_folders.append(np.asarray(ids, dtype=np.int16)[x.case_folders] if len(ids) else x.case_folders)
        case_offsets.append(offset)
        offset += len(x.case_names)
    cat = np.concatenate
    return SliceIndex(folders, cat([x.case_names for x in indices]), cat([x.case_patients for x in indices]),
                      cat([x.case_kinds for x in indices]), cat(case_folders), cat([x.case_starts for x in indices]),
                      cat([x.case_ms for x in indices]),
                      cat([x.slice_case.astype(np.int64) + o for x, o in zip(indices, case_offsets)]),
                      cat([x.slice_k for x in indices]))


def record_positions(records: Sequence[SliceRecord]) -> np.ndarray:
    """n / m of every record (float64): vectorised for a :class:`SliceIndex`, record by record otherwise."""
    if isinstance(records, SliceIndex):
        return records.positions
    return np.array([r.position for r in records], dtype=float)


def record_patient_codes(records: Sequence[SliceRecord]) -> np.ndarray:
    """Per record, the rank of its patient among the sorted distinct patients (``np.unique``'s inverse)."""
    if isinstance(records, SliceIndex):
        return records.patient_codes()
    return np.unique([r.patient for r in records], return_inverse=True)[1]
