"""Drawing the patient-level train/val/test split at conversion time.

The split is over patients, never over cases, so ED and ES of a patient always fall on the same
side. ``split_patients`` draws it; the converter records it in ``glrp_split.json``, whose reading,
cases table and nnU-Net folds live in :mod:`nnunetv2_glrp.dataset_split`.
"""

from __future__ import annotations

import numpy as np


def round_half_up(x: float) -> int:
    """Round to the nearest integer, halves upwards (Python's round() rounds 12.5 to 12)."""
    return int(np.floor(x + 0.5 + 1e-9))


def parse_ratio(split: str) -> tuple[float, float, float]:
    """'7:1:2' -> (0.7, 0.1, 0.2); ValueError on anything else than three non-negative numbers."""
    parts = split.split(":")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = []
    if len(values) != 3 or not all(np.isfinite(values)) or any(v < 0 for v in values) or values[0] == 0:
        raise ValueError(f"split must be 'official' or 'train:val:test' with a positive train part, got {split!r}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def split_patients(patients: list[str], split: str = "7:1:2", seed: int = 0,
                   official_test: list[str] | None = None) -> dict[str, list[str]]:
    """Assign patients to train/val/test by a seeded shuffle.

    ``split='a:b:c'``: shuffle all patients with ``np.random.default_rng(seed)``, take
    ``round(n*a)`` for train and ``round(n*b)`` for val (halves rounded up), the rest for test; each set with a positive
    ratio gets at least one patient when there are enough patients (taken from train).
    ValueError when the train or the val set would be empty (the message gives the three counts).
    ``split='official'``: ``official_test`` is the test set; the others are shuffled and
    ``round(n/8)`` (halves up, at least 1 when n >= 2) go to val (ACDC's 7:1 inside its training/ folder).
    Returns sorted lists."""
    ids = sorted(patients)
    rng = np.random.default_rng(seed)
    if split == "official":
        if official_test is None:
            raise ValueError("split='official' needs the list of official test patients")
        test = sorted(set(official_test))
        pool = [p for p in ids if p not in set(test)]
        if not pool:
            raise ValueError("split='official': no patients outside the official test set")
        order = [pool[i] for i in rng.permutation(len(pool))]
        n_val = max(1, round_half_up(len(pool) / 8)) if len(pool) >= 2 else 0
        return _checked({"train": sorted(order[n_val:]), "val": sorted(order[:n_val]), "test": test}, split)
    ratios = parse_ratio(split)
    n = len(ids)
    counts = [round_half_up(n * ratios[0]), round_half_up(n * ratios[1])]
    counts.append(n - sum(counts))
    if counts[2] < 0:
        counts[1] += counts[2]
        counts[2] = 0
    for i in (1, 2):  # a non-zero part gets a patient if train can spare one
        if ratios[i] > 0 and counts[i] == 0 and counts[0] > 1:
            counts[0] -= 1
            counts[i] = 1
    order = [ids[i] for i in rng.permutation(n)]
    train, val = order[: counts[0]], order[counts[0]: counts[0] + counts[1]]
    test = order[counts[0] + counts[1]:]
    return _checked({"train": sorted(train), "val": sorted(val), "test": sorted(test)}, split)


def _checked(sets: dict[str, list[str]], split: str) -> dict[str, list[str]]:
    """The sets, or ValueError when training or validation would be empty (nnU-Net needs both)."""
    if not sets["train"] or not sets["val"]:
        n = sum(len(v) for v in sets.values())
        raise ValueError(f"split {split!r} over {n} patients gives {len(sets['train'])} train / {len(sets['val'])} "
                         f"val / {len(sets['test'])} test patients; training and validation need at least one "
                         "patient each")
    return sets
