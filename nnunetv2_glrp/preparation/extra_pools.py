"""Extra unlabeled pools for pretraining: the frames of other converted datasets, in the target's plans.

A user with several data sources (ACDC + Sunnybrook cine + M&Ms, say) pretrains one encoder on all of
them and fine-tunes on one (the *target*). A pool is another dataset converted by this package (it has
``glrp_split.json`` in ``$nnUNet_raw/<pool>``); it needs no planning of its own. What enters pretraining
from a pool: every image of its TRAIN and VAL patients, the labeled ones as images only (their labels are
never read) and its ``unlabeledTr/`` frames; never a case of one of its test patients (they are not even
preprocessed). Each image goes through the target's preprocessor with the target's plans and
configuration (``unlabeled.preprocess_cases``: resumable, rebuilt when the plans change), into
``$nnUNet_preprocessed/<target>/<data_identifier>_pool_<pool>/`` with its record beside it.

Patients of a pool enter the slice index as ``<pool>/<patient>`` so that equal ids of two datasets stay two
patients. :func:`pool_manifest` describes a pool's pretraining cases as ``data.pretraining_data_manifest``
does the target's; the pretraining cache key covers the pools through it (``pretraining.api``).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Iterable, Sequence

from nnunetv2_glrp.data.slice_index import PRETRAINING_SETS, pretraining_data_manifest
from nnunetv2_glrp.dataset_split import read_split
from nnunetv2_glrp.preparation.records import SPLIT_FILE, file_sha256

logger = logging.getLogger(__name__)

#: where each kind of case of a pool lives in its raw folder
SOURCE_FOLDERS = {"labeled": "imagesTr", "unlabeled": "unlabeledTr"}


def pool_names(pools: Iterable[str | int], target: str) -> tuple[str, ...]:
    """Sorted, unique dataset names of ``pools`` (ids or names); ValueError when one is the target."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    names = sorted({str(maybe_convert_to_dataset_name(p)) for p in pools})  # not numpy str_ (its repr)
    if target in names:
        raise ValueError(f"extra pretraining pool {target} is the target dataset itself")
    return tuple(names)


def pool_split(pool: str) -> dict:
    """The pool's split as the slice index reads it: its train/val cases, every one of kind "unlabeled" (a
    labeled image is pretraining input like any frame), patients named ``<pool>/<patient>``; its test
    patients listed, their cases left out."""
    raw = Path(os.environ["nnUNet_raw"]) / pool
    split = read_split(raw, context=f"extra pretraining pool {pool}",
                       fix="convert it with nnUNetv2_glrp (convert-acdc, ...) first")
    name = lambda patient: f"{pool}/{patient}"  # noqa: E731
    cases = {case: {"patient": name(info["patient"]), "set": info["set"], "kind": "unlabeled",
                    "source_kind": info.get("kind", "labeled")}
             for case, info in split["cases"].items() if info.get("set") in PRETRAINING_SETS}
    return {"train": [name(p) for p in split["train"]], "val": [name(p) for p in split["val"]],
            "test": [name(p) for p in split["test"]], "cases": cases, "n4": split.get("n4")}


def pool_manifest(pool: str) -> dict:
    """What pretraining takes from ``pool`` (its train/val patients and cases), with the pool's name."""
    return {"dataset": pool, **pretraining_data_manifest(pool_split(pool))}


def pool_folder(target: str, configuration: str, plans_identifier: str, pool: str) -> Path:
    """``$nnUNet_preprocessed/<target>/<data_identifier>_pool_<pool>``."""
    from nnunetv2_glrp.preparation.unlabeled import _load_plans

    data_identifier = _load_plans(target, plans_identifier).get_configuration(configuration).data_identifier
    return Path(os.environ["nnUNet_preprocessed"]) / target / f"{data_identifier}_pool_{pool}"


def pool_images(pool: str, split: dict, file_ending: str, n_channels: int) -> dict[str, list[str]]:
    """{case: channel files} of the pool's train/val cases; FileNotFoundError naming a missing file."""
    raw = Path(os.environ["nnUNet_raw"]) / pool
    out = {}
    for case, info in sorted(split["cases"].items()):
        folder = raw / SOURCE_FOLDERS[info["source_kind"]]
        files = [folder / f"{case}_{c:04d}{file_ending}" for c in range(n_channels)]
        missing = [f for f in files if not f.is_file()]
        if missing:
            raise FileNotFoundError(f"extra pretraining pool {pool}: case {case} ({info['patient']}) listed in "
                                    f"{SPLIT_FILE} has no image {missing[0]}")
        out[case] = [os.fspath(f) for f in files]
    return out


def preprocess_pool(target: str, configuration: str, plans_identifier: str, pool: str,
                    num_processes: int = 1) -> Path:
    """Preprocess the pool's train/val images with the target's plans and configuration; return the folder.

    Resumable and lock-protected (two pretrainings needing the same pool share one preprocessing). The pool
    must have as many channels as the target and the same file ending (ValueError naming both otherwise)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from nnunetv2_glrp.pretraining.checkpoint import file_lock
    from nnunetv2_glrp.preparation.unlabeled import preprocess_cases

    target_json_file = Path(os.environ["nnUNet_preprocessed"]) / target / "dataset.json"
    plans_file = Path(os.environ["nnUNet_preprocessed"]) / target / f"{plans_identifier}.json"
    for needed in (target_json_file, plans_file):
        if not needed.is_file():
            raise FileNotFoundError(f"{needed} not found: prepare the target dataset {target} first")
    target_json = json.loads(target_json_file.read_text(encoding="utf-8"))
    pool_json_file = Path(os.environ["nnUNet_raw"]) / pool / "dataset.json"
    if not pool_json_file.is_file():
        raise FileNotFoundError(f"extra pretraining pool {pool}: {pool_json_file} not found")
    pool_json = json.loads(pool_json_file.read_text(encoding="utf-8"))
    n_channels = len(target_json["channel_names"])
    if len(pool_json["channel_names"]) != n_channels or pool_json["file_ending"] != target_json["file_ending"]:
        raise ValueError(f"extra pretraining pool {pool} has channels {pool_json['channel_names']} and files "
                         f"{pool_json['file_ending']!r}, the target {target} {target_json['channel_names']} and "
                         f"{target_json['file_ending']!r}: a pool must have the target's channels")
    split = pool_split(pool)
    cases = pool_images(pool, split, target_json["file_ending"], n_channels)
    if not cases:
        raise ValueError(f"extra pretraining pool {pool} has no case of a train or val patient")
    output = pool_folder(target, configuration, plans_identifier, pool)
    record = {"dataset": pool, "target": target, "plans_identifier": plans_identifier, "configuration": configuration,
              "source": os.fspath(Path(os.environ["nnUNet_raw"]) / pool), "n_cases": len(cases),
              "cases": sorted(cases), "patients": sorted({split["cases"][c]["patient"] for c in cases}),
              "glrp_split_sha256": file_sha256(Path(os.environ["nnUNet_raw"]) / pool / SPLIT_FILE)}
    with file_lock(output.parent / f".{output.name}.lock"):
        return preprocess_cases(cases, output, PlansManager(os.fspath(plans_file)), configuration, target_json,
                                record, num_processes, what=f"pool {pool}")


def manifest_with_pools(manifest: dict, pools: Sequence[str]) -> dict:
    """The target's pretraining manifest plus the pools' (:func:`pool_manifest`, under ``extra_pools``); unchanged
    without pools, so the cache key of a pretraining without them is what it always was."""
    return {**manifest, "extra_pools": [pool_manifest(p) for p in pools]} if pools else manifest
