"""``prepare``: fingerprint/plan -> plans overlay -> labeled and unlabeled preprocessing -> patient-level splits.

Each step lives in its own module of :mod:`nnunetv2_glrp.preparation` (planning, overlays,
unlabeled, records); this module runs them in order and preprocesses the labeled cases with
nnU-Net's own preprocessor, skipping a configuration whose record matches the present plans and cases.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from nnunetv2_glrp.dataset_split import write_splits_final
from nnunetv2_glrp.preparation.overlay_schema import load_overlay
from nnunetv2_glrp.preparation.overlays import apply_plans_overlay, resolve_overlay_path
from nnunetv2_glrp.preparation.planning import dataset_number, plan_dataset
from nnunetv2_glrp.preparation.records import (delete_stale_ground_truth, plans_file, preprocessing_fingerprint,
                                               raw_dataset_state, read_record, write_record)
from nnunetv2_glrp.preparation.unlabeled import preprocess_unlabeled

logger = logging.getLogger(__name__)


def _labeled_done(dataset_name: str, plans_identifier: str, configuration: str,
                  raw_state: dict) -> tuple[bool, Path, str]:
    """Whether nnU-Net's preprocessed folder of ``configuration`` is complete for the current plans and cases.

    Complete means: the record's plans hash is the current one, it lists exactly the raw dataset's
    labeled cases, and the folder holds exactly those cases (one ``.pkl`` each)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(os.fspath(plans_file(dataset_name, plans_identifier)))
    folder = plans_file(dataset_name, plans_identifier).parent / manager.get_configuration(configuration).data_identifier
    record_file = folder.parent / f"glrp_preprocessing_{folder.name}.json"
    fingerprint = preprocessing_fingerprint(manager, configuration)
    record = read_record(record_file)
    present = sorted(p.stem for p in folder.glob("*.pkl"))
    done = (record.get("fingerprint") == fingerprint and record.get("cases") == raw_state["labeled_cases"]
            and present == raw_state["labeled_cases"])
    if not done and record:
        logger.warning("%s: %s is stale (plans changed: %s; cases changed: %s): preprocessing it again", dataset_name,
                       folder, record.get("fingerprint") != fingerprint, present != raw_state["labeled_cases"])
    return done, record_file, fingerprint


def prepare_dataset(dataset_name_or_id: int | str, overlay: str | os.PathLike = "nnunet_cpu", num_processes: int = 1,
                    plans_identifier: str = "nnUNetPlans", verify: bool = True) -> str:
    """Fingerprint (+ integrity check) -> plan -> overlay -> preprocess labeled + unlabeled -> splits.

    Each step is skipped when its output already exists and its record matches the present raw
    dataset (the fingerprint: labeled cases and dataset.json/glrp_split.json hashes; a preprocessed
    folder: plans hash and exactly the present case identifiers; unlabeled outputs of cases no
    longer in ``unlabeledTr/`` are deleted). nnU-Net's own configurations are planned but not
    preprocessed. Returns the overlay's (first) configuration name. An overlay with several
    configurations gets all of them preprocessed."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset

    load_overlay(resolve_overlay_path(overlay))  # a bad overlay fails now, not after minutes of fingerprinting
    dataset_name = plan_dataset(dataset_name_or_id, plans_identifier, num_processes, verify)
    dataset_id = dataset_number(dataset_name)
    configurations = apply_plans_overlay(dataset_name, overlay, plans_identifier)
    raw_state = raw_dataset_state(dataset_name)
    delete_stale_ground_truth(dataset_name, raw_state["labeled_cases"])
    for configuration in configurations:
        done, record, fingerprint = _labeled_done(dataset_name, plans_identifier, configuration, raw_state)
        if done:
            logger.info("%s: %s already preprocessed", dataset_name, configuration)
        else:
            record.unlink(missing_ok=True)
            preprocess_dataset(dataset_id, plans_identifier, [configuration], [num_processes])
            write_record(record, {"configuration": configuration, "fingerprint": fingerprint,
                                  "cases": raw_state["labeled_cases"],
                                  "glrp_split_sha256": raw_state["glrp_split_sha256"]})
        preprocess_unlabeled(dataset_name, configuration, plans_identifier, num_processes)
    write_splits_final(dataset_name)
    return configurations[0]
