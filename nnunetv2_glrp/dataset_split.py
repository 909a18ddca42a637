"""The dataset split file ``glrp_split.json``: its one reader, its cases table, and nnU-Net's folds from it.

The converter draws the patient-level train/val/test split (:mod:`nnunetv2_glrp.conversion.splits`)
and writes it as ``$nnUNet_raw/<dataset>/glrp_split.json`` with the record this module starts
(:func:`new_split_record`). Everything after conversion reads the file through :func:`read_split`:
``prepare`` and ``write-splits`` (which copy it into ``$nnUNet_preprocessed/<dataset>`` and write
nnU-Net's ``splits_final.json`` from it), the pretraining slice index and the fine-tuning trainers
(the patient of each case, :func:`patient_of_case`).

Content: ``format_version``, ``split`` (the ratio or "official"), ``seed``, ``train``/``val``/``test``
(sorted patient ids), ``cases`` (case id -> ``{"patient", "set", "kind", ...}``, kind "labeled" or
"unlabeled"), ``slice_order``, ``n_slices``, ``missing_cine``, ``n4`` and ``source_root``.

Folds (:func:`nnunet_folds`): fold 0 is exactly the GLRP train/val split (so ``nnUNetv2_train ... 0``
validates on the GLRP validation patients); folds 1-4 are folds 1-4 of a seeded patient-level 5-fold
cross-validation over the train+val patients (its fold 0 is replaced by the GLRP split). With fewer
than 5 train+val patients only the folds with a non-empty validation side are produced.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Mapping

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_write_json

logger = logging.getLogger(__name__)

SPLIT_FILE = "glrp_split.json"
#: sha256 of the raw glrp_split.json, added to the preprocessed copy by prepare / write-splits
RAW_DIGEST_KEY = "raw_split_sha256"
FORMAT_VERSION = 1
N_FOLDS = 5
FOLDS_METHOD = "fold 0 = glrp_split train/val; folds 1-4 = patient-level 5-fold CV folds 1-4"
REQUIRED = ("train", "val", "test", "cases")
DEFAULT_FIX = "convert the dataset with nnUNetv2_glrp convert-acdc, then run nnUNetv2_glrp prepare (which copies it)"

_FRAME_SUFFIX = re.compile(r"^(?P<patient>.+)_(ED|ES)$")


def new_split_record(split: str, seed: int, sets: dict[str, list[str]], n4: dict | None, source_root: str) -> dict:
    """The record the converter fills in (cases, slice order, ...) and writes as :data:`SPLIT_FILE`."""
    return {"format_version": FORMAT_VERSION, "split": split, "seed": seed, **sets,
            "cases": {}, "slice_order": {}, "n_slices": {}, "missing_cine": [], "n4": n4, "source_root": source_root}


def split_path(source: str | os.PathLike) -> Path:
    """``source`` itself when it names a ``.json`` file, else ``source/glrp_split.json`` (a dataset folder)."""
    source = Path(source)
    return source if source.suffix == ".json" else source / SPLIT_FILE


def read_split(source: str | os.PathLike, context: str | None = None, required: tuple[str, ...] = REQUIRED,
               fix: str = DEFAULT_FIX) -> dict:
    """Load ``glrp_split.json`` (a file, or a raw/preprocessed dataset folder holding it).

    FileNotFoundError when absent (naming ``context``, the file and ``fix``); ValueError when it is
    not JSON or lacks one of the ``required`` entries. ``context`` defaults to the folder's name."""
    path = split_path(source)
    context = context or path.parent.name
    if not path.is_file():
        raise FileNotFoundError(f"{context}: {path} not found; {fix}")
    try:
        glrp_split = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{context}: {path} is not valid JSON: {exc}") from exc
    for key in required:
        if key not in glrp_split:
            raise ValueError(f"{context}: {path} has no {key!r} entry")
    check_raw_digest(glrp_split, path)
    return glrp_split


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_raw_digest(glrp_split: dict, path: Path) -> None:
    """ValueError when ``glrp_split`` is a preprocessed copy (it holds :data:`RAW_DIGEST_KEY`, written by
    ``prepare``/``write-splits``) whose raw ``$nnUNet_raw/<dataset>/glrp_split.json`` changed since.

    A copy without the digest (written before it existed) or without a raw file to compare is not checked."""
    recorded = glrp_split.get(RAW_DIGEST_KEY)
    if recorded is None or not os.environ.get("nnUNet_raw"):
        return
    name = path.parent.name
    raw = Path(os.environ["nnUNet_raw"]) / name / SPLIT_FILE
    if raw.is_file() and _sha256(raw) != recorded:
        number = name[len("Dataset"):len("Dataset") + 3] if name.startswith("Dataset") else name
        raise ValueError(f"the raw split of {name} changed after prepare ({path} is a copy of an older {SPLIT_FILE}); "
                         f"rerun `nnUNetv2_glrp prepare -d {number} ...`")


def read_cases_table(dataset_folder: str | os.PathLike) -> dict[str, dict] | None:
    """The ``cases`` table of ``<dataset_folder>/glrp_split.json``, or None when the file is absent."""
    path = Path(dataset_folder) / SPLIT_FILE
    if not path.is_file():
        return None
    table = read_split(path, required=("cases",))["cases"]
    if not isinstance(table, dict):
        raise ValueError(f"{path}: 'cases' must map case ids to {{'patient', 'set', 'kind'}}")
    return table


def patient_of_case(case_id: str, cases_table: Mapping[str, Mapping] | None = None) -> str:
    """The patient a labeled case belongs to: the ``cases`` table when it lists the case, else the case id
    without its ``_ED``/``_ES`` suffix (``patient001_ED`` -> ``patient001``)."""
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


def write_patient_level_splits(glrp_split: dict, target_dir: Path, seed: int = 0, copy_split: bool = True,
                               raw_sha256: str | None = None) -> Path:
    """Write ``splits_final.json`` (patient-level folds of ``glrp_split``) and ``glrp_folds.json`` (the seed)
    into ``target_dir``, and a copy of ``glrp_split.json`` unless ``copy_split`` is False (with
    ``raw_sha256``, the raw file's digest, under :data:`RAW_DIGEST_KEY` when given). Returns the
    path of ``splits_final.json``."""
    folds = nnunet_folds(glrp_split, seed=seed)
    target_dir.mkdir(parents=True, exist_ok=True)
    if copy_split:
        copy = {**glrp_split, RAW_DIGEST_KEY: raw_sha256} if raw_sha256 else glrp_split
        atomic_write_json(target_dir / SPLIT_FILE, copy)
    atomic_write_json(target_dir / "glrp_folds.json", {"seed": seed, "n_folds": len(folds), "method": FOLDS_METHOD})
    out = target_dir / "splits_final.json"
    atomic_write_json(out, folds)
    logger.info("%s: wrote %d patient-level folds to %s", target_dir.name, len(folds), out)
    return out


def write_splits_final(dataset_name_or_id: str | int, seed: int = 0) -> Path:
    """Write ``$nnUNet_preprocessed/<dataset>/splits_final.json`` from the raw dataset's glrp_split.json.

    Also copies ``glrp_split.json`` there, with the raw file's sha256 under :data:`RAW_DIGEST_KEY`
    (which :func:`read_split` compares with the raw file on every later read of the copy), and
    records the fold seed in ``glrp_folds.json``.
    Returns the path of ``splits_final.json``."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    name = maybe_convert_to_dataset_name(dataset_name_or_id)
    for var in ("nnUNet_raw", "nnUNet_preprocessed"):
        if not os.environ.get(var):
            raise ValueError(f"environment variable {var} is not set")
    raw = Path(os.environ["nnUNet_raw"]) / name / SPLIT_FILE
    glrp_split = read_split(raw, name, fix="convert the dataset with nnUNetv2_glrp convert-acdc")
    glrp_split.pop(RAW_DIGEST_KEY, None)
    return write_patient_level_splits(glrp_split, Path(os.environ["nnUNet_preprocessed"]) / name, seed,
                                      raw_sha256=_sha256(raw))
