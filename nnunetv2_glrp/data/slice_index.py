"""Index of every pretraining slice: labeled cases and unlabeled frames of TRAIN and VAL patients only.

Uses ``glrp_split.json`` (written by the converter, copied into the preprocessed dataset folder, read
with :func:`nnunetv2_glrp.dataset_split.read_split`) to map each preprocessed case to its patient and set; a case of a test patient is never indexed, and a
case absent from the split is an error (we cannot prove it is not a test case). Labels are never read:
only the image array's shape and the ``.pkl`` properties are opened here.

The index is a :class:`~nnunetv2_glrp.data.lean_index.SliceIndex` (numpy arrays, a ``Sequence[SliceRecord]``
that builds each record on demand), made from each folder's case table, which is cached next to the cases
(:mod:`nnunetv2_glrp.data.case_table`): a pool of thousands of patients is read once, not per run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np

from nnunetv2_glrp.data.case_table import case_row, case_table
from nnunetv2_glrp.data.lean_index import SliceIndex, SliceRecord, concatenate

logger = logging.getLogger(__name__)

__all__ = ["SliceIndex", "SliceRecord", "build_slice_index", "index_unlabeled_folder", "pretraining_cases",
           "pretraining_data_manifest", "data_digest", "PRETRAINING_SETS"]

PRETRAINING_SETS = ("train", "val")


def pretraining_cases(split: dict, sets: tuple[str, ...] = PRETRAINING_SETS) -> dict[str, dict]:
    """Case id -> its split entry, for every case of a patient in ``sets`` (labeled and unlabeled)."""
    return {case: info for case, info in split["cases"].items() if info.get("set") in sets}


def pretraining_data_manifest(split: dict, sets: tuple[str, ...] = PRETRAINING_SETS) -> dict:
    """What a pretraining run is trained on, from ``glrp_split.json``: the sorted patients of ``sets``,
    the sorted (case, patient, set, kind) of their cases and the converter's N4 setting (it changes the
    images). :func:`build_slice_index` fails unless it indexes exactly these cases, so the manifest
    describes the data actually used."""
    cases = pretraining_cases(split, sets)
    return {"sets": list(sets), "patients": sorted({p for s in sets for p in split[s]}),
            "cases": sorted([case, info["patient"], info["set"], info.get("kind", "labeled")]
                            for case, info in cases.items()),
            "n4": split.get("n4")}


def data_digest(manifest: dict) -> str:
    """Short sha1 of a :func:`pretraining_data_manifest` (the data half of the pretraining cache key)."""
    return hashlib.sha1(json.dumps(manifest, sort_keys=True, default=str).encode()).hexdigest()[:10]


def _listed_by_kind(split: dict, sets: tuple[str, ...], kind: str) -> set[str]:
    return {c for c, info in pretraining_cases(split, sets).items() if info.get("kind", "labeled") == kind}


def _index_folder(folder: Path, kind: str, split: dict, sets: tuple[str, ...], fix: str) -> SliceIndex:
    allowed_patients = {p for s in sets for p in split[s]}
    test_patients = set(split["test"])
    table = case_table(folder)  # cached next to the cases (data/case_table.py)
    present = table.names.tolist()
    wrong = [c for c in present if c in split["cases"] and split["cases"][c].get("kind", "labeled") != kind]
    if wrong:
        raise ValueError(f"case {wrong[0]} in the {kind} folder {folder} is listed as "
                         f"{split['cases'][wrong[0]].get('kind')!r} in glrp_split.json")
    missing = sorted(_listed_by_kind(split, sets, kind) - set(present))
    if missing:
        raise FileNotFoundError(f"{folder}: {len(missing)} {kind} case(s) of train/val patients listed in "
                                f"glrp_split.json are not preprocessed ({', '.join(missing[:5])}"
                                f"{', ...' if len(missing) > 5 else ''}); {fix}")
    rows, patients = [], []
    n_slices, starts, ms = table.n_slices.copy(), table.starts.copy(), table.ms.copy()
    for i, case in enumerate(present):
        info = split["cases"].get(case)
        if info is None:
            raise ValueError(f"case {case} in {folder} is not listed in glrp_split.json: cannot tell whether it "
                             "belongs to a test patient")
        patient = info["patient"]
        if info.get("set") not in sets or patient not in allowed_patients:
            continue
        if patient in test_patients:
            raise ValueError(f"case {case}: patient {patient} is listed both as {info.get('set')} and test")
        if n_slices[i] < 0:  # unusable when the table was built: raises the case's error (or it was transient)
            n_slices[i], starts[i], ms[i] = case_row(folder, case)
        rows.append(i)
        patients.append(patient)
    rows = np.asarray(rows, dtype=np.int64)
    return SliceIndex.from_cases(str(folder), table.names[rows], np.asarray(patients, dtype=str), [kind] * len(rows),
                                 starts[rows], ms[rows], n_slices[rows])


def index_unlabeled_folder(folder: Path, split: dict, sets: tuple[str, ...] = PRETRAINING_SETS,
                           fix: str = "run `nnUNetv2_glrp pretrain` again") -> SliceIndex:
    """Every slice of the unlabeled cases of ``split``'s patients in ``sets`` in ``folder`` (an extra pool,
    ``preparation.extra_pools``): every listed case must be there, an unlisted one is an error, test never."""
    records = _index_folder(Path(folder), "unlabeled", split, sets, fix)
    bad = set(records.case_patients.tolist()) & set(split["test"])
    assert not bad, f"test patients {sorted(bad)} in the pretraining index"
    return records


def build_slice_index(labeled_folder: Path, unlabeled_folder: Path | None, split: dict,
                      sets: tuple[str, ...] = PRETRAINING_SETS, fix: str = "run `nnUNetv2_glrp prepare`"
                      ) -> SliceIndex:
    """Every slice of every case of a patient in ``sets``: labeled cases from ``labeled_folder``, unlabeled
    frames from ``unlabeled_folder``.

    Every case that ``glrp_split.json`` lists for those patients must be there: a missing folder or case
    raises FileNotFoundError naming the folder and ``fix`` (the command that preprocesses it). When the
    split lists no unlabeled case for them (a converter that wrote none), ``unlabeled_folder`` may be
    None or absent. A case in a folder but not in the split is a ValueError (we cannot prove it is not
    a test case); cases of other sets are skipped."""
    labeled_folder = Path(labeled_folder)
    if not labeled_folder.is_dir():
        raise FileNotFoundError(f"preprocessed folder {labeled_folder} not found; {fix}")
    records = _index_folder(labeled_folder, "labeled", split, sets, fix)
    wanted_unlabeled = _listed_by_kind(split, sets, "unlabeled")
    if wanted_unlabeled:
        if unlabeled_folder is None or not Path(unlabeled_folder).is_dir():
            raise FileNotFoundError(f"unlabeled preprocessed folder {unlabeled_folder} not found, but glrp_split.json "
                                    f"lists {len(wanted_unlabeled)} unlabeled frames of train/val patients; {fix}")
        records = concatenate([records, _index_folder(Path(unlabeled_folder), "unlabeled", split, sets, fix)])
    elif unlabeled_folder is not None and Path(unlabeled_folder).is_dir():
        records = concatenate([records, _index_folder(Path(unlabeled_folder), "unlabeled", split, sets, fix)])
    else:
        logger.info("glrp_split.json lists no unlabeled frames: pretraining on the labeled frames only")
    if not len(records):
        raise ValueError(f"no pretraining slices of sets {sets} found in {labeled_folder} and {unlabeled_folder}")
    bad = set(records.case_patients.tolist()) & set(split["test"])
    assert not bad, f"test patients {sorted(bad)} in the pretraining index"
    return records
