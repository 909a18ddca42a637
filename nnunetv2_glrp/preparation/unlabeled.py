"""Preprocess the unlabeled cine frames (``unlabeledTr/``) exactly like nnU-Net's labeled cases.

Every image group ``unlabeledTr/<case>_XXXX<file_ending>`` goes through the preprocessor class that
the plans configuration names (``DefaultPreprocessor`` for our overlays), with the same plans, the
same configuration and the preprocessed ``dataset.json``, via its ``run_case_save`` with
``seg_file=None``. The output has nnU-Net's own file format (``<case>.b2nd``, ``<case>_seg.b2nd``,
``<case>.pkl`` in 2.8.1), so ``nnUNetDatasetBlosc2`` reads it; for an unlabeled case the ``_seg``
array is nnU-Net's nonzero mask (0 inside the image's nonzero region, -1 outside), no label.

Output: ``$nnUNet_preprocessed/<dataset>/<data_identifier>_unlabeled/``. Choices (not fixed by
nnU-Net or the paper):
- Resume: each case is written under ``<output>/.incomplete/`` and then moved into place with the
  ``.pkl`` last; a case counts as done when its three files exist. A killed run leaves at most
  files in ``.incomplete/``, which the next run deletes.
- Staleness: a record ``glrp_preprocessing_<folder name>.json`` beside the folder (never inside it:
  nnU-Net's ``infer_dataset_class`` refuses folders with foreign file types) holds a hash of
  everything that determines the output (resolved configuration, intensity properties, transpose,
  reader), the sorted case identifiers of ``unlabeledTr/`` and a hash of ``glrp_split.json``
  (provenance). When the plans hash differs the folder is rebuilt from scratch; outputs of cases
  that are no longer in ``unlabeledTr/`` are deleted, so the folder holds exactly the present cases.
- No random choices are made (nnU-Net samples foreground locations only for labeled cases).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path

from nnunetv2_glrp.preparation.records import (SPLIT_FILE, file_sha256, preprocessing_fingerprint, read_record,
                                               write_record)

__all__ = ["UNLABELED_SUBFOLDER", "INCOMPLETE", "preprocessing_fingerprint", "unlabeled_folder",
           "list_unlabeled_cases", "preprocess_unlabeled", "preprocess_cases"]

logger = logging.getLogger(__name__)

UNLABELED_SUBFOLDER = "unlabeledTr"
INCOMPLETE = ".incomplete"
_CASE_SUFFIXES = (".b2nd", "_seg.b2nd", ".pkl")  # the .pkl is moved last and marks a finished case


def _preprocessed_dataset_folder(dataset_name: str) -> Path:
    return Path(os.environ["nnUNet_preprocessed"]) / dataset_name


def _load_plans(dataset_name: str, plans_identifier: str):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_file = _preprocessed_dataset_folder(dataset_name) / f"{plans_identifier}.json"
    if not plans_file.is_file():
        raise FileNotFoundError(
            f"plans file {plans_file} not found: plan the dataset first "
            "(nnUNetv2_glrp prepare, or nnUNetv2_extract_fingerprint + nnUNetv2_plan_experiment)")
    return PlansManager(os.fspath(plans_file))


def unlabeled_folder(dataset_name_or_id: int | str, configuration: str,
                     plans_identifier: str = "nnUNetPlans") -> Path:
    """``$nnUNet_preprocessed/<dataset>/<data_identifier>_unlabeled`` of this plans configuration."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    plans_manager = _load_plans(dataset_name, plans_identifier)
    data_identifier = plans_manager.get_configuration(configuration).data_identifier
    return _preprocessed_dataset_folder(dataset_name) / f"{data_identifier}_unlabeled"


def list_unlabeled_cases(raw_dataset_folder: Path, file_ending: str, n_channels: int) -> dict[str, list[str]]:
    """Case identifier -> its channel files (sorted by channel) in ``unlabeledTr/``.

    Raises FileNotFoundError when the folder is missing and ValueError naming the case when a case
    lacks a channel or a file does not follow ``<case>_XXXX<file_ending>``."""
    folder = raw_dataset_folder / UNLABELED_SUBFOLDER
    if not folder.is_dir():
        raise FileNotFoundError(f"no {UNLABELED_SUBFOLDER}/ folder in {raw_dataset_folder}: convert the dataset "
                                "with nnunetv2_glrp (convert-acdc / make-phantom), which writes the unlabeled frames")
    pattern = re.compile(r"(.+)_(\d{4})" + re.escape(file_ending))
    cases: dict[str, dict[int, str]] = {}
    for entry in sorted(folder.iterdir()):
        if not entry.name.endswith(file_ending):
            continue
        match = pattern.fullmatch(entry.name)
        if match is None:
            raise ValueError(f"{entry}: unlabeled image names must be <case>_XXXX{file_ending} (4-digit channel)")
        cases.setdefault(match.group(1), {})[int(match.group(2))] = os.fspath(entry)
    result = {}
    for case, channels in cases.items():
        if sorted(channels) != list(range(n_channels)):
            raise ValueError(f"unlabeled case {case} in {folder} has channels {sorted(channels)}, "
                             f"dataset.json expects {list(range(n_channels))}")
        result[case] = [channels[c] for c in range(n_channels)]
    return result


def _case_done(output: Path, case: str) -> bool:
    return all((output / f"{case}{suffix}").is_file() for suffix in _CASE_SUFFIXES)


def _candidate_cases(file_name: str) -> set[str]:
    """The cases an output file can belong to (``<case>.b2nd``, ``<case>_seg.b2nd``, ``<case>.pkl``)."""
    return {file_name[: -len(suffix)] for suffix in _CASE_SUFFIXES if file_name.endswith(suffix)}


def _delete_cases_not_in(output: Path, cases: set[str]) -> None:
    """Delete the output files of cases that left ``unlabeledTr/`` (.pkl files first: a case stops counting as done)."""
    stale = [p for p in output.iterdir()
             if p.is_file() and _candidate_cases(p.name) and not _candidate_cases(p.name) & cases]
    for path in sorted(stale, key=lambda p: (not p.name.endswith(".pkl"), p.name)):
        path.unlink()
    if stale:
        logger.warning("%s: deleted %d files of cases no longer in %s/", output, len(stale), UNLABELED_SUBFOLDER)


def _preprocess_one(case: str, image_files: list[str], output: str, plans: dict, configuration: str,
                    dataset_json: dict) -> str:
    """Preprocess one case into ``output/.incomplete`` and move it into place (.pkl last)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans_manager = PlansManager(plans)
    configuration_manager = plans_manager.get_configuration(configuration)
    preprocessor = configuration_manager.preprocessor_class(verbose=False)
    staging = Path(output) / INCOMPLETE
    staging.mkdir(exist_ok=True)
    try:
        preprocessor.run_case_save(os.fspath(staging / case), image_files, None, plans_manager,
                                   configuration_manager, dataset_json)
    except Exception as error:
        raise ValueError(f"preprocessing unlabeled case {case} ({image_files}) failed: {error}") from error
    for suffix in _CASE_SUFFIXES:
        os.replace(staging / f"{case}{suffix}", Path(output) / f"{case}{suffix}")
    return case


def _preprocess_one_star(arguments: tuple) -> str:
    return _preprocess_one(*arguments)


def preprocess_unlabeled(dataset_name_or_id: int | str, configuration: str, plans_identifier: str = "nnUNetPlans",
                         num_processes: int = 1, output_folder: str | os.PathLike | None = None) -> Path:
    """Preprocess every image of ``unlabeledTr/`` like nnU-Net's labeled cases; return the output folder.

    Cases already done are skipped (resume). ``num_processes=1`` runs in this process; more use a
    spawn pool. ``output_folder`` overrides :func:`unlabeled_folder` (used by tests)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    plans_manager = _load_plans(dataset_name, plans_identifier)
    plans_manager.get_configuration(configuration)  # clear error when the configuration is missing
    dataset_json_file = _preprocessed_dataset_folder(dataset_name) / "dataset.json"
    if not dataset_json_file.is_file():
        raise FileNotFoundError(f"{dataset_json_file} not found: run nnU-Net's experiment planning first")
    dataset_json = json.loads(dataset_json_file.read_text(encoding="utf-8"))
    raw_folder = Path(os.environ["nnUNet_raw"]) / dataset_name
    cases = list_unlabeled_cases(raw_folder, dataset_json["file_ending"], len(dataset_json["channel_names"]))

    output = Path(output_folder) if output_folder is not None else unlabeled_folder(
        dataset_name, configuration, plans_identifier)
    record = {"dataset": dataset_name, "plans_identifier": plans_identifier, "configuration": configuration,
              "source": os.fspath(raw_folder / UNLABELED_SUBFOLDER), "n_cases": len(cases), "cases": sorted(cases),
              "glrp_split_sha256": file_sha256(raw_folder / SPLIT_FILE)}
    return preprocess_cases(cases, output, plans_manager, configuration, dataset_json, record, num_processes)


def preprocess_cases(cases: dict[str, list[str]], output: Path, plans_manager, configuration: str, dataset_json: dict,
                     record: dict, num_processes: int = 1, what: str = "unlabeled") -> Path:
    """Preprocess the image-only ``cases`` ({case: channel files}) into ``output`` with ``plans_manager``'s
    ``configuration``; the resumable, staleness-checked core of :func:`preprocess_unlabeled`, shared by the
    extra pretraining pools (``preparation.extra_pools``). ``record`` (plus the plans fingerprint) is written
    beside ``output``; output of other plans is rebuilt, of cases no longer given deleted, done cases skipped."""
    from nnunetv2_glrp.progress import tqdm

    record_file = output.parent / f"glrp_preprocessing_{output.name}.json"
    fingerprint = preprocessing_fingerprint(plans_manager, configuration)
    if output.exists():
        if read_record(record_file).get("fingerprint") != fingerprint:
            logger.warning("%s was preprocessed with other plans (or has no record): rebuilding it", output)
            shutil.rmtree(output)
        else:
            _delete_cases_not_in(output, set(cases))
    shutil.rmtree(output / INCOMPLETE, ignore_errors=True)
    output.mkdir(parents=True, exist_ok=True)
    write_record(record_file, {**record, "fingerprint": fingerprint})

    todo = [case for case in cases if not _case_done(output, case)]
    logger.info("%s: %d %s cases, %d already done, %d to preprocess", record.get("dataset"), len(cases), what,
                len(cases) - len(todo), len(todo))
    jobs = [(case, cases[case], os.fspath(output), plans_manager.plans, configuration, dataset_json)
            for case in todo]
    progress = tqdm(total=len(jobs), desc=f"Preprocessing {what} ({configuration})", disable=not jobs)
    with progress:
        if num_processes <= 1 or len(jobs) <= 1:
            for job in jobs:
                _preprocess_one(*job)
                progress.update()
        else:
            import multiprocessing

            with multiprocessing.get_context("spawn").Pool(min(num_processes, len(jobs))) as pool:
                for _ in pool.imap_unordered(_preprocess_one_star, jobs):
                    progress.update()
    shutil.rmtree(output / INCOMPLETE, ignore_errors=True)
    return output
