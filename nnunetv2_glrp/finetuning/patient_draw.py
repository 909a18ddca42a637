"""Seeded, nested, method-independent draws of the k labeled patients a fine-tuning run sees.

The draw depends on the fold, the seed and the sorted list of the fold's training patients only
(never on the method or on k): one permutation of the sorted patients from
``numpy.random.default_rng([seed, fold_entropy])``, of which the first k are taken. Hence the
patients for k=2 are a subset of those for k=6 (nested), and GLRP, GRP, LRP and Random at the same
fold and seed see identical patients. Both labeled frames (ED and ES) of a chosen patient are kept.

Patient of a case: the ``cases`` table of ``glrp_split.json`` when given, else the case id without
its ``_ED``/``_ES`` suffix (``patient001_ED`` -> ``patient001``).
"""

from __future__ import annotations

import json
import os
import re
import zlib
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np

#: k values of the paper's ACDC table (Table 1).
PAPER_K_VALUES: tuple[int, ...] = (2, 6, 10, 15, 20, 30, 105)

_FRAME_SUFFIX = re.compile(r"^(?P<patient>.+)_(ED|ES)$")


def fold_entropy(fold: int | str) -> int:
    """Non-negative integer for the seed sequence: the fold number, or crc32 of ``"all"`` etc."""
    if isinstance(fold, (int, np.integer)) and fold >= 0:
        return int(fold)
    return zlib.crc32(str(fold).encode("utf-8"))


def patient_of_case(case_id: str, cases_table: Mapping[str, Mapping] | None = None) -> str:
    """The patient a labeled case belongs to (see the module docstring)."""
    if cases_table is not None and case_id in cases_table:
        patient = cases_table[case_id].get("patient")
        if not patient:
            raise ValueError(f"glrp_split.json: case {case_id!r} has no 'patient' entry")
        return str(patient)
    match = _FRAME_SUFFIX.match(case_id)
    if match is None:
        raise ValueError(
            f"cannot tell the patient of case {case_id!r}: it is not in glrp_split.json's 'cases' "
            "table and its name does not end in _ED or _ES"
        )
    return match.group("patient")


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


def load_cases_table(preprocessed_dataset_folder: str | os.PathLike) -> dict[str, dict] | None:
    """The ``cases`` table of ``<preprocessed>/glrp_split.json``, or None when the file is absent."""
    path = Path(preprocessed_dataset_folder) / "glrp_split.json"
    if not path.is_file():
        return None
    try:
        table = json.loads(path.read_text())["cases"]
    except (json.JSONDecodeError, KeyError) as err:
        raise ValueError(f"{path}: not a glrp_split.json with a 'cases' table ({err})") from err
    if not isinstance(table, dict):
        raise ValueError(f"{path}: 'cases' must map case ids to {{'patient', 'set', 'kind'}}")
    return table


def write_selection(path: str | os.PathLike, record: dict) -> None:
    """Write the selection JSON atomically; refuse to overwrite a different earlier selection.

    A second run in the same output folder (``--c``, ``--val``) must have drawn the same patients;
    otherwise the folder holds a model trained on other patients and mixing them would be silent.
    """
    path = Path(path)
    if path.is_file():
        old = json.loads(path.read_text())
        keys = ("fold", "seed", "k", "patients")
        if any(old.get(key) != record.get(key) for key in keys):
            raise ValueError(
                f"{path} records another k-patient draw ({ {k: old.get(k) for k in keys} }) than this run "
                f"({ {k: record.get(k) for k in keys} }); use another output folder or the same seed"
            )
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2))
    os.replace(tmp, path)
