"""Patient-level splits: the GLRP train/val/test split and nnU-Net's ``splits_final.json``.

Every split here is over patients, never over cases, so ED and ES of a patient always fall on the
same side. ``split_patients`` draws the train/val/test split recorded in ``glrp_split.json``;
``nnunet_folds`` turns it into nnU-Net's five folds: fold 0 is exactly the GLRP train/val split
(so ``nnUNetv2_train ... 0`` validates on the GLRP validation patients); folds 1-4 are folds 1-4 of
a seeded patient-level 5-fold cross-validation over the train+val patients (its fold 0 is replaced
by the GLRP split). With fewer than 5 train+val patients only the folds with a non-empty validation
side are produced.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_write_json

logger = logging.getLogger(__name__)

N_FOLDS = 5


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
    if len(values) != 3 or any(v < 0 for v in values) or sum(values) <= 0 or values[0] == 0:
        raise ValueError(f"split must be 'official' or 'train:val:test' with a positive train part, got {split!r}")
    total = sum(values)
    return values[0] / total, values[1] / total, values[2] / total


def split_patients(patients: list[str], split: str = "7:1:2", seed: int = 0,
                   official_test: list[str] | None = None) -> dict[str, list[str]]:
    """Assign patients to train/val/test by a seeded shuffle.

    ``split='a:b:c'``: shuffle all patients with ``np.random.default_rng(seed)``, take
    ``round(n*a)`` for train and ``round(n*b)`` for val (halves rounded up), the rest for test; each set with a positive
    ratio gets at least one patient when there are enough patients (taken from train).
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
        return {"train": sorted(order[n_val:]), "val": sorted(order[:n_val]), "test": test}
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
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def _cases_by_patient(glrp_split: dict) -> dict[str, list[str]]:
    cases: dict[str, list[str]] = {}
    for case_id, case in glrp_split["cases"].items():
        if case["kind"] == "labeled":
            cases.setdefault(case["patient"], []).append(case_id)
    return {p: sorted(c) for p, c in cases.items()}


def nnunet_folds(glrp_split: dict, seed: int = 0) -> list[dict]:
    """nnU-Net ``splits_final.json`` content (list of {'train': [...], 'val': [...]}) over labeled case ids.

    Fold 0 = GLRP train/val; folds 1-4 = folds 1-4 of a seeded patient-level 5-fold CV over
    train+val patients (patients shuffled with ``default_rng(seed)``, cut by ``np.array_split``)."""
    by_patient = _cases_by_patient(glrp_split)
    pool = sorted(glrp_split["train"] + glrp_split["val"])
    missing = [p for p in pool if p not in by_patient]
    if missing:
        raise ValueError(f"glrp_split.json lists train/val patients without labeled cases: {', '.join(missing)}")

    def cases(patients) -> list[str]:
        return sorted(c for p in patients for c in by_patient[p])

    folds = [{"train": cases(glrp_split["train"]), "val": cases(glrp_split["val"])}]
    order = [pool[i] for i in np.random.default_rng(seed).permutation(len(pool))]
    chunks = np.array_split(np.array(order, dtype=object), N_FOLDS)
    for k in range(1, N_FOLDS):
        val = set(chunks[k].tolist())
        if not val:
            logger.warning("only %d train+val patients: cross-validation fold %d has no validation patient and is "
                           "left out of splits_final.json", len(pool), k)
            continue
        folds.append({"train": cases(p for p in pool if p not in val), "val": cases(val)})
    return folds


FOLDS_METHOD = "fold 0 = glrp_split train/val; folds 1-4 = patient-level 5-fold CV folds 1-4"


def read_glrp_split(source: Path, context: str, required: tuple[str, ...] = ("train", "val", "test", "cases")) -> dict:
    """Load ``glrp_split.json`` and check it has the ``required`` entries; errors name ``context`` and the file."""
    try:
        glrp_split = json.loads(Path(source).read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{context}: {source} is not valid JSON: {exc}") from exc
    for key in required:
        if key not in glrp_split:
            raise ValueError(f"{context}: {source} has no {key!r} entry")
    return glrp_split


def write_patient_level_splits(glrp_split: dict, target_dir: Path, seed: int = 0, copy_split: bool = True) -> Path:
    """Write ``splits_final.json`` (patient-level folds of ``glrp_split``) and ``glrp_folds.json`` (the seed)
    into ``target_dir``, and a copy of ``glrp_split.json`` unless ``copy_split`` is False. Returns the
    path of ``splits_final.json``."""
    folds = nnunet_folds(glrp_split, seed=seed)
    target_dir.mkdir(parents=True, exist_ok=True)
    if copy_split:
        atomic_write_json(target_dir / "glrp_split.json", glrp_split)
    atomic_write_json(target_dir / "glrp_folds.json", {"seed": seed, "n_folds": len(folds), "method": FOLDS_METHOD})
    out = target_dir / "splits_final.json"
    atomic_write_json(out, folds)
    logger.info("%s: wrote %d patient-level folds to %s", target_dir.name, len(folds), out)
    return out


def write_splits_final(dataset_name_or_id: str | int, seed: int = 0) -> Path:
    """Write ``$nnUNet_preprocessed/<dataset>/splits_final.json`` from the raw dataset's glrp_split.json.

    Also copies ``glrp_split.json`` there and records the fold seed in ``glrp_folds.json``.
    Returns the path of ``splits_final.json``."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(dataset_name_or_id)
    for var in ("nnUNet_raw", "nnUNet_preprocessed"):
        if not os.environ.get(var):
            raise ValueError(f"environment variable {var} is not set")
    source = Path(os.environ["nnUNet_raw"]) / name / "glrp_split.json"
    if not source.is_file():
        raise FileNotFoundError(f"{name}: {source} not found; convert the dataset with nnUNetv2_glrp convert-acdc")
    glrp_split = read_glrp_split(source, name)
    return write_patient_level_splits(glrp_split, Path(os.environ["nnUNet_preprocessed"]) / name, seed)
