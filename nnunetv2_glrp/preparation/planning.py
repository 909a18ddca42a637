"""Prepare steps 1-2: nnU-Net's integrity check, fingerprint and experiment planning, redone only when stale.

The fingerprint is redone (and every plans file planned from it deleted) when the raw dataset state
recorded in ``glrp_fingerprint.json`` differs from the present one (:mod:`nnunetv2_glrp.preparation.records`).
"""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from pathlib import Path

from nnunetv2_glrp.preparation.records import plans_file, raw_dataset_state, read_record, write_record

logger = logging.getLogger(__name__)

FINGERPRINT_RECORD = "glrp_fingerprint.json"


def dataset_number(dataset_name: str) -> int:
    return int(dataset_name[len("Dataset"):len("Dataset") + 3])


RAW_IMAGE_FOLDERS = ("imagesTr", "labelsTr", "unlabeledTr", "imagesTs", "labelsTs")


def check_raw_files_complete(folder: Path) -> None:
    """Every image file of a raw dataset is complete and finite (:func:`nnunetv2_glrp.image_io.check_complete`):
    nnU-Net reads them with SimpleITK, which turns a truncated file's missing voxels into zeros. ValueError
    listing the bad files."""
    from nnunetv2_glrp.progress import tqdm

    from nnunetv2_glrp.image_io import ImageFileError, check_complete

    files = sorted(p for sub in RAW_IMAGE_FOLDERS if (folder / sub).is_dir() for p in (folder / sub).iterdir()
                   if p.is_file())
    bad = []
    for path in tqdm(files, desc=f"checking {folder.name} files", unit="file", disable=len(files) < 50):
        try:
            check_complete(path)
        except ImageFileError as error:
            bad.append(str(error))
    if bad:
        raise ValueError(f"{folder}: {len(bad)} image file(s) incomplete or not finite: {'; '.join(bad[:10])}"
                         + (f"; and {len(bad) - 10} more" if len(bad) > 10 else ""))


def _verify_integrity(dataset_name: str, num_processes: int) -> None:
    """Our completeness check of every file, then nnU-Net's ``--verify_dataset_integrity``; its failures
    become a ValueError naming the dataset."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folder = Path(os.environ["nnUNet_raw"]) / dataset_name
    check_raw_files_complete(folder)
    logger.info("%s: verifying dataset integrity (nnU-Net)", dataset_name)
    try:
        # nnU-Net's spawned workers print the offending files; unbuffered, so that a worker the pool terminates
        # still has printed them when its stdout is a file or a pipe (a background run's log)
        with _environment_variable("PYTHONUNBUFFERED", "1"):
            verify_dataset_integrity(os.fspath(folder), num_processes)
    except (AssertionError, RuntimeError, FileNotFoundError) as error:
        raise ValueError(f"{folder}: nnU-Net's dataset integrity check failed: {error} "
                         "(nnU-Net printed the offending files above)") from error


@contextmanager
def _environment_variable(name: str, value: str | None):
    """``os.environ[name] = value`` inside the block (nothing changed for None), restored (or removed) after."""
    if value is None:
        yield
        return
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def plan_dataset(dataset_name_or_id: int | str, plans_identifier: str = "nnUNetPlans", num_processes: int = 1,
                 verify: bool = True) -> str:
    """nnU-Net integrity check + fingerprint + experiment planning (no preprocessing); the dataset name.

    Skips the fingerprint (and with it the check) when ``dataset_fingerprint.json`` exists and its
    record (``glrp_fingerprint.json``) holds the present raw-dataset state (labeled case identifiers,
    hashes of dataset.json and glrp_split.json, see :mod:`nnunetv2_glrp.preparation.records`);
    otherwise the fingerprint and every plans file planned from it are redone. Planning is skipped
    when the plans file exists. nnU-Net's planner calls ``torch.set_num_threads`` with
    ``nnUNet_n_proc_DA``, which fails for 0 (our "no augmentation workers" setting), so the variable
    is raised to 1 while planning and restored afterwards."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                      plan_experiment_dataset)
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    dataset_id = dataset_number(dataset_name)
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    fingerprint_file = preprocessed / "dataset_fingerprint.json"
    record_file = preprocessed / FINGERPRINT_RECORD
    state, record = raw_dataset_state(dataset_name), read_record(record_file)
    if fingerprint_file.is_file() and record.get("raw") != state:
        logger.warning("%s: the raw dataset differs from the one the fingerprint was made from (%s): redoing the "
                       "fingerprint and the plans", dataset_name, "no record" if not record.get("raw") else
                       ", ".join(k for k in state if record["raw"].get(k) != state[k]))
        fingerprint_file.unlink()
    replan = not plans_file(dataset_name, plans_identifier).is_file()
    if not fingerprint_file.is_file():
        for identifier in set(record.get("plans_identifiers", [])) - {plans_identifier}:
            logger.warning("%s: deleting %s.json, planned from the previous fingerprint", dataset_name, identifier)
            plans_file(dataset_name, identifier).unlink(missing_ok=True)
        if verify:
            _verify_integrity(dataset_name, num_processes)
        logger.info("%s: extracting the fingerprint", dataset_name)
        extract_fingerprint_dataset(dataset_id, num_processes=num_processes, check_dataset_integrity=False,
                                    clean=True, verbose=False)
        record, replan = {"raw": state, "plans_identifiers": []}, True
        write_record(record_file, record)
    if replan:
        logger.info("%s: planning (nnU-Net's configurations are planned, not preprocessed)", dataset_name)
        overwrite = None if plans_identifier == "nnUNetPlans" else plans_identifier
        previous = os.environ.get("nnUNet_n_proc_DA")
        with _environment_variable("nnUNet_n_proc_DA", "1" if previous is not None and int(previous) < 1 else None):
            plan_experiment_dataset(dataset_id, overwrite_plans_name=overwrite)
    if plans_identifier not in record["plans_identifiers"]:
        write_record(record_file, {**record, "plans_identifiers": record["plans_identifiers"] + [plans_identifier]})
    return dataset_name
