"""What a preprocessed output was made from: raw-dataset state, plans hash, and atomic JSON records.

``prepare`` and ``preprocess-unlabeled`` reuse outputs only when the record written next to them
matches the present raw dataset exactly. The state of a raw dataset (:func:`raw_dataset_state`):

- ``labeled_cases``: the sorted identifiers of nnU-Net's training cases (``imagesTr/``, or the
  ``dataset`` entry of ``dataset.json``), as nnU-Net's preprocessor enumerates them;
- ``dataset_json_sha256``: a hash of the raw ``dataset.json`` (labels, channels, file ending);
- ``glrp_split_sha256``: a hash of ``glrp_split.json`` (split, seed, provenance, N4 settings), which
  changes whenever the dataset is converted with other settings; ``None`` when the file is absent.

Choices (not fixed by nnU-Net or the paper): the fingerprint and plans are redone when any of the three
changed (a re-conversion may change image content behind unchanged names, and the fingerprint is
cheap next to preprocessing); the preprocessed arrays are redone when the plans hash
(:func:`preprocessing_fingerprint`, which includes the fingerprint's intensity statistics) or the
case identifiers changed. The split hash is stored in the preprocessing records as provenance: a
new split with the same cases and the same resulting plans leaves identical arrays, kept as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.dataset_split import SPLIT_FILE

logger = logging.getLogger(__name__)

def file_sha256(path: Path) -> str | None:
    """sha256 of a file's bytes, or None when it does not exist."""
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def labeled_case_identifiers(raw_dataset_folder: Path) -> list[str]:
    """Sorted identifiers of the training cases nnU-Net's preprocessor would write for this raw dataset."""
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    dataset_json_file = raw_dataset_folder / "dataset.json"
    if not dataset_json_file.is_file():
        raise FileNotFoundError(f"{dataset_json_file} not found: convert the dataset first")
    dataset_json = json.loads(dataset_json_file.read_text(encoding="utf-8"))
    return sorted(get_filenames_of_train_images_and_targets(os.fspath(raw_dataset_folder), dataset_json))


def raw_dataset_state(dataset_name: str) -> dict:
    """Labeled case identifiers and the hashes of dataset.json and glrp_split.json of ``$nnUNet_raw/<dataset>``."""
    folder = Path(os.environ["nnUNet_raw"]) / dataset_name
    return {"labeled_cases": labeled_case_identifiers(folder),
            "dataset_json_sha256": file_sha256(folder / "dataset.json"),
            "glrp_split_sha256": file_sha256(folder / SPLIT_FILE)}


def plans_file(dataset_name: str, plans_identifier: str) -> Path:
    """``$nnUNet_preprocessed/<dataset>/<plans_identifier>.json``."""
    return Path(os.environ["nnUNet_preprocessed"]) / dataset_name / f"{plans_identifier}.json"


def preprocessing_fingerprint(plans_manager, configuration: str) -> str:
    """sha256 of everything in the plans that changes the preprocessed arrays of ``configuration``."""
    resolved = plans_manager.get_configuration(configuration).configuration
    relevant = {
        "configuration": resolved,
        "foreground_intensity_properties_per_channel": plans_manager.foreground_intensity_properties_per_channel,
        "transpose_forward": plans_manager.transpose_forward,
        "image_reader_writer": plans_manager.plans["image_reader_writer"],
    }
    return hashlib.sha256(json.dumps(relevant, sort_keys=True, default=str).encode()).hexdigest()


def read_record(path: Path) -> dict:
    """The record's content; {} when it is missing or unreadable (an unreadable record means: redo)."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        logger.warning("%s is not valid JSON: treating its outputs as stale", path)
        return {}
    return record if isinstance(record, dict) else {}


def write_record(path: Path, record: dict) -> None:
    """Write ``record`` as JSON atomically (temporary name, then rename)."""
    atomic_write_json(path, record)


def delete_stale_ground_truth(dataset_name: str, labeled_cases: list[str]) -> list[str]:
    """Delete ``gt_segmentations/`` files of cases that are no longer training cases; return their names.

    nnU-Net copies each label there when preprocessing (only newer files) but never removes one."""
    raw_json = json.loads((Path(os.environ["nnUNet_raw"]) / dataset_name / "dataset.json").read_text(encoding="utf-8"))
    folder = Path(os.environ["nnUNet_preprocessed"]) / dataset_name / "gt_segmentations"
    ending, keep = raw_json["file_ending"], set(labeled_cases)
    stale = sorted(p.name for p in folder.glob(f"*{ending}") if p.name[: -len(ending)] not in keep) \
        if folder.is_dir() else []
    for name in stale:
        (folder / name).unlink()
    if stale:
        logger.warning("%s: deleted %d ground-truth files of cases no longer in the dataset", folder, len(stale))
    return stale
