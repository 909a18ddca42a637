"""Patients of cases: seeded k-patient draws and patient-level fold checks for fine-tuning.

Draws: seeded, nested, method-independent draws of the k labeled patients a fine-tuning run sees.

The draw depends on the fold, the seed and the sorted list of the fold's training patients only
(never on the method or on k): one permutation of the sorted patients from
``numpy.random.default_rng([seed, fold_entropy])``, of which the first k are taken. Hence the
patients for k=2 are a subset of those for k=6 (nested), and GLRP, GRP, LRP and Random at the same
fold and seed see identical patients. Both labeled frames (ED and ES) of a chosen patient are kept.

Patient of a case: :func:`nnunetv2_glrp.dataset_split.patient_of_case` (the ``cases`` table of
``glrp_split.json`` when given, else the case id without its ``_ED``/``_ES`` suffix).

Folds: ``ensure_patient_level_splits`` writes a patient-level ``splits_final.json`` before nnU-Net
would write its own per-case split; ``check_patient_level_split`` refuses a fold in which a patient
has cases on both the training and the validation side.
"""

from __future__ import annotations

import json
import os
import time
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.dataset_split import (SPLIT_FILE, patient_of_case, read_split, write_patient_level_splits,
                                        write_splits_final)

from nnunetv2_glrp.registry import PAPER_K_VALUES  # noqa: F401  (re-exported: the k values of the paper's Table 1)

def fold_entropy(fold: int | str) -> int:
    """Non-negative integer for the seed sequence: the fold number, or crc32 of ``"all"`` etc."""
    if isinstance(fold, (int, np.integer)) and fold >= 0:
        return int(fold)
    return zlib.crc32(str(fold).encode("utf-8"))


def draw_patients(patients: Iterable[str], k: int, fold: int | str, seed: int) -> list[str]:
    """The k patients of a fold's training pool, in draw order (prefix of one seeded permutation)."""
    pool = sorted(set(patients))
    if k < 1:
        raise ValueError(f"k must be a positive number of labeled patients, got k={k}")
    if k > len(pool):
        raise ValueError(
            f"k={k} labeled patients requested, but fold {fold} has only {len(pool)} training patients"
        )
    rng = np.random.default_rng([int(seed), fold_entropy(fold)])
    order = rng.permutation(len(pool))
    return [pool[i] for i in order[:k]]


def select_cases(
    train_cases: Iterable[str],
    k: int,
    fold: int | str,
    seed: int,
    cases_table: Mapping[str, Mapping] | None = None,
) -> tuple[list[str], list[str]]:
    """(chosen patients in draw order, their training cases in the fold's original order)."""
    train_cases = list(train_cases)
    by_case = {case: patient_of_case(case, cases_table) for case in train_cases}
    chosen = draw_patients(by_case.values(), k, fold, seed)
    keep = set(chosen)
    return chosen, [case for case in train_cases if by_case[case] in keep]


def count_patients(train_cases: Iterable[str], cases_table: Mapping[str, Mapping] | None = None) -> int:
    """Number of distinct patients among ``train_cases``."""
    return len({patient_of_case(case, cases_table) for case in train_cases})


def write_selection(path: str | os.PathLike, record: dict) -> None:
    """Write the selection JSON atomically; refuse to overwrite a different earlier selection.

    A second run in the same output folder (``--c``, ``--val``) must have drawn the same patients;
    otherwise the folder holds a model trained on other patients and mixing them would be silent.
    """
    path = Path(path)
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        keys = ("fold", "seed", "k", "patients")
        if any(old.get(key) != record.get(key) for key in keys):
            raise ValueError(
                f"{path} records another k-patient draw ({ {k: old.get(k) for k in keys} }) than this run "
                f"({ {k: record.get(k) for k in keys} }); use another output folder or the same seed"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record)


def patients_on_both_sides(
    train_cases: Iterable[str], val_cases: Iterable[str], cases_table: Mapping[str, Mapping] | None = None,
) -> dict[str, tuple[list[str], list[str]]]:
    """{patient: (its training cases, its validation cases)} for every patient found on both sides."""
    train_by: dict[str, list[str]] = {}
    val_by: dict[str, list[str]] = {}
    for cases, by in ((train_cases, train_by), (val_cases, val_by)):
        for case in cases:
            by.setdefault(patient_of_case(case, cases_table), []).append(case)
    return {p: (sorted(train_by[p]), sorted(val_by[p])) for p in sorted(set(train_by) & set(val_by))}


def check_patient_level_split(
    train_cases: Iterable[str], val_cases: Iterable[str], fold: int | str, splits_file: str | os.PathLike,
    cases_table: Mapping[str, Mapping] | None = None,
) -> None:
    """ValueError naming the patients (and their cases) that fold ``fold`` puts on both sides."""
    leaked = patients_on_both_sides(train_cases, val_cases, cases_table)
    if leaked:
        detail = "; ".join(f"{p}: train {tr}, val {val}" for p, (tr, val) in leaked.items())
        raise ValueError(
            f"fold {fold} of {splits_file} is not patient-level: {len(leaked)} patient(s) have cases on both the "
            f"training and the validation side ({detail}). Write a patient-level split with "
            "'nnUNetv2_glrp write-splits' (or delete the file so the trainer writes one from glrp_split.json)"
        )


def _splits_source(dataset_name: str, preprocessed_base: Path) -> Path | None:
    raw_root = os.environ.get("nnUNet_raw")
    for candidate in ((Path(raw_root) / dataset_name / SPLIT_FILE) if raw_root else None,
                      preprocessed_base / SPLIT_FILE):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def ensure_patient_level_splits(
    dataset_name: str, preprocessed_base: str | os.PathLike, writer: bool = True, timeout_s: float = 600.0,
) -> Path | None:
    """Make sure ``<preprocessed_base>/splits_final.json`` exists and is patient-level, before nnU-Net's do_split.

    Nothing is done when the file exists (it is checked per fold afterwards) or when the dataset has
    no ``glrp_split.json`` (neither in ``$nnUNet_raw/<dataset>`` nor in ``preprocessed_base``): then
    nnU-Net writes its own split and the per-fold check decides. Otherwise the writer (rank 0 under
    DDP) writes it: from the raw dataset with ``dataset_split.write_splits_final`` (which also
    copies ``glrp_split.json`` and records the fold seed in ``glrp_folds.json``) when
    ``$nnUNet_preprocessed/<dataset>`` is ``preprocessed_base``, else from the ``glrp_split.json``
    copy in ``preprocessed_base`` with the seed of its ``glrp_folds.json`` (0 when absent). The other
    ranks poll for the file (written atomically; no collective, so no process-group deadlock) and
    raise TimeoutError after ``timeout_s``. Returns the path of splits_final.json, or None.
    """
    base = Path(preprocessed_base)
    splits = base / "splits_final.json"
    if splits.is_file():
        return splits
    source = _splits_source(dataset_name, base)
    if source is None:
        return None
    if not writer:
        deadline = time.monotonic() + timeout_s
        while not splits.is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{splits} was not written by rank 0 within {timeout_s:.0f} s")
            time.sleep(0.5)
        return splits
    env_base = os.environ.get("nnUNet_preprocessed")
    same_base = bool(env_base) and (Path(env_base) / dataset_name).resolve() == base.resolve()
    if source.parent != base and same_base:
        write_splits_final(dataset_name)
    else:
        glrp_split = read_split(source, dataset_name, required=("train", "val", "cases"))
        folds_file = base / "glrp_folds.json"
        seed = int(json.loads(folds_file.read_text(encoding="utf-8")).get("seed", 0)) if folds_file.is_file() else 0
        write_patient_level_splits(glrp_split, base, seed, copy_split=source.parent != base)
    if not splits.is_file():
        raise FileNotFoundError(f"{dataset_name}: writing the patient-level split did not produce {splits}")
    return splits
