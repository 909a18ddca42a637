"""Plans overlays: new configurations in nnU-Net's own plans file, and the one-call dataset preparation.

Overlay schema (``plans/*.json``)::

    {
      "description": "free text",
      "configurations": {
        "<new configuration name>": {
          "inherits_from": "2d",                         # required: a configuration of the plans file
          "data_identifier": "{plans_identifier}_<name>", # required; {plans_identifier} is substituted
          "<any configuration key>": <value>,             # replaces the parent's value
          "architecture": {...}                           # deep-merged over the parent's architecture
        }
      }
    }

nnU-Net resolves ``inherits_from`` with a shallow ``dict.update``; we therefore deep-merge
``architecture`` ourselves and write the complete architecture into the plans file, so the file is
self-explaining. Keys we add to a written configuration: ``median_image_size_in_voxels`` (when the
overlay does not set it: nnU-Net's median shape in mm divided by the new spacing) and
``glrp_overlay`` (overlay file name and a hash of the resolved entry), which marks the configuration
as ours: apply refuses to replace a configuration without it, so nnU-Net's own stay untouched.
:func:`apply_plans_overlay` returns every configuration the overlay defines (added now or already
present and identical: applying twice changes nothing).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
from pathlib import Path

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.preprocessing_records import (delete_stale_ground_truth, preprocessing_fingerprint,
                                                 raw_dataset_state, read_record, write_record)

logger = logging.getLogger(__name__)

FINGERPRINT_RECORD = "glrp_fingerprint.json"
PLANS_FOLDER = Path(__file__).resolve().parent.parent / "plans"
OVERLAY_MARKER = "glrp_overlay"


def resolve_overlay_path(overlay: str | os.PathLike) -> Path:
    """A path to an overlay JSON, or a bare name (``small_cpu``, ``paper``) of the repository's ``plans/``."""
    path = Path(overlay)
    if path.is_file():
        return path
    named = PLANS_FOLDER / (path.name if path.suffix == ".json" else f"{path.name}.json")
    if path.parent == Path(".") and named.is_file():
        return named
    known = sorted(p.stem for p in PLANS_FOLDER.glob("*.json"))
    raise FileNotFoundError(f"plans overlay {overlay!r} not found (neither a file nor one of {known} in {PLANS_FOLDER})")


def _deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _validate(name: str, entry: dict, parent: dict, source: Path) -> None:
    """Raise ValueError naming the overlay file and configuration when the entry is inconsistent."""
    where = f"{source}: configuration {name!r}"
    kwargs = entry["architecture"]["arch_kwargs"]
    n = kwargs["n_stages"]
    for key in ("features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage"):
        if key in kwargs and isinstance(kwargs[key], list) and len(kwargs[key]) != n:
            raise ValueError(f"{where}: {key} has {len(kwargs[key])} entries, n_stages is {n}")
    decoder = kwargs.get("n_conv_per_stage_decoder")
    if isinstance(decoder, list) and len(decoder) != n - 1:
        raise ValueError(f"{where}: n_conv_per_stage_decoder needs n_stages - 1 = {n - 1} entries")
    dims = len(parent["spacing"])
    if len(entry["spacing"]) != dims or len(entry["patch_size"]) != dims:
        raise ValueError(f"{where}: spacing and patch_size need {dims} entries like {entry['inherits_from']!r}")
    for axis, size in enumerate(entry["patch_size"]):
        factor = 1
        for stride in kwargs["strides"]:
            factor *= stride[axis]
        if size % factor:
            raise ValueError(f"{where}: patch_size {entry['patch_size']} is not divisible by the total stride "
                             f"{factor} along axis {axis}")


def _build_configurations(overlay_file: Path, plans: dict, plans_identifier: str) -> dict[str, dict]:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    try:
        overlay = json.loads(overlay_file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{overlay_file}: not valid JSON ({error})") from error
    if not isinstance(overlay.get("configurations"), dict) or not overlay["configurations"]:
        raise ValueError(f"{overlay_file}: expected a non-empty 'configurations' object (schema: see nnunetv2_glrp.plans)")
    manager = PlansManager(plans)
    built = {}
    for name, spec in overlay["configurations"].items():
        for key in ("inherits_from", "data_identifier"):
            if key not in spec:
                raise ValueError(f"{overlay_file}: configuration {name!r} lacks {key!r}")
        parent_name = spec["inherits_from"]
        if parent_name not in plans["configurations"] or parent_name in overlay["configurations"]:
            raise ValueError(f"{overlay_file}: configuration {name!r} inherits from {parent_name!r}, which is not one "
                             f"of nnU-Net's configurations {sorted(plans['configurations'])}")
        parent = manager.get_configuration(parent_name).configuration
        entry = {k: copy.deepcopy(v) for k, v in spec.items() if k != "architecture"}
        entry["data_identifier"] = spec["data_identifier"].format(plans_identifier=plans_identifier)
        entry["architecture"] = _deep_merge(parent["architecture"], spec.get("architecture", {}))
        entry.setdefault("spacing", parent["spacing"])
        entry.setdefault("patch_size", parent["patch_size"])
        if "median_image_size_in_voxels" not in entry:
            shape_mm = [s * sp for s, sp in zip(plans["original_median_shape_after_transp"],
                                                plans["original_median_spacing_after_transp"])]
            entry["median_image_size_in_voxels"] = [round(mm / sp, 1)
                                                    for mm, sp in zip(shape_mm[-len(entry["spacing"]):], entry["spacing"])]
        _validate(name, entry, parent, overlay_file)
        digest = hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:16]
        entry[OVERLAY_MARKER] = {"overlay": overlay_file.name, "sha256": digest}
        built[name] = entry
    return built


def _plans_file(dataset_name: str, plans_identifier: str) -> Path:
    return Path(os.environ["nnUNet_preprocessed"]) / dataset_name / f"{plans_identifier}.json"


def apply_plans_overlay(dataset_name_or_id: int | str, overlay: str | os.PathLike,
                        plans_identifier: str = "nnUNetPlans") -> list[str]:
    """Add the overlay's configurations to nnU-Net's plans file (atomically); return their names."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    overlay_file = resolve_overlay_path(overlay)
    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    plans_file = _plans_file(dataset_name, plans_identifier)
    if not plans_file.is_file():
        raise FileNotFoundError(
            f"nnU-Net plans file {plans_file} does not exist yet: run nnUNetv2_plan_and_preprocess (or "
            f"nnUNetv2_extract_fingerprint + nnUNetv2_plan_experiment) for {dataset_name} first, "
            "or use `nnUNetv2_glrp prepare`")
    plans = json.loads(plans_file.read_text())
    built = _build_configurations(overlay_file, plans, plans_identifier)
    identifiers = {n: c.get("data_identifier") for n, c in plans["configurations"].items()}
    changed = False
    for name, entry in built.items():
        existing = plans["configurations"].get(name)
        if existing is not None and OVERLAY_MARKER not in existing:
            raise ValueError(f"{overlay_file}: configuration {name!r} already exists in {plans_file} and was not "
                             "written by a plans overlay; refusing to modify it (rename the overlay configuration)")
        clash = [n for n, ident in identifiers.items() if ident == entry["data_identifier"] and n != name]
        if clash:
            raise ValueError(f"{overlay_file}: data_identifier {entry['data_identifier']!r} of {name!r} is already "
                             f"used by {clash} in {plans_file}")
        if existing == entry:
            logger.info("%s: configuration %s already up to date", plans_file, name)
            continue
        if existing is not None:
            logger.warning("%s: replacing overlay configuration %s (its preprocessed data will be redone)",
                           plans_file, name)
        plans["configurations"][name] = entry
        changed = True
    if changed:
        atomic_write_json(plans_file, plans, indent=4)
        logger.info("%s: wrote configurations %s", plans_file, sorted(built))
    return list(built)


def _dataset_id(dataset_name: str) -> int:
    return int(dataset_name[len("Dataset"):len("Dataset") + 3])


def _labeled_done(dataset_name: str, plans_identifier: str, configuration: str,
                  raw_state: dict) -> tuple[bool, Path, str]:
    """Whether nnU-Net's preprocessed folder of ``configuration`` is complete for the current plans and cases.

    Complete means: the record's plans hash is the current one, it lists exactly the raw dataset's
    labeled cases, and the folder holds exactly those cases (one ``.pkl`` each)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(os.fspath(_plans_file(dataset_name, plans_identifier)))
    folder = _plans_file(dataset_name, plans_identifier).parent / manager.get_configuration(configuration).data_identifier
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


def _verify_integrity(dataset_name: str, num_processes: int) -> None:
    """nnU-Net's ``--verify_dataset_integrity``; its failures become a ValueError naming the dataset."""
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    folder = Path(os.environ["nnUNet_raw"]) / dataset_name
    logger.info("%s: verifying dataset integrity (nnU-Net)", dataset_name)
    try:
        verify_dataset_integrity(os.fspath(folder), num_processes)
    except (AssertionError, RuntimeError, FileNotFoundError) as error:
        raise ValueError(f"{folder}: nnU-Net's dataset integrity check failed: {error} "
                         "(nnU-Net printed the offending files above)") from error


def plan_dataset(dataset_name_or_id: int | str, plans_identifier: str = "nnUNetPlans", num_processes: int = 1,
                 verify: bool = True) -> str:
    """nnU-Net integrity check + fingerprint + experiment planning (no preprocessing); the dataset name.

    Skips the fingerprint (and with it the check) when ``dataset_fingerprint.json`` exists and its
    record (``glrp_fingerprint.json``) holds the present raw-dataset state (labeled case identifiers,
    hashes of dataset.json and glrp_split.json, see :mod:`nnunetv2_glrp.preprocessing_records`);
    otherwise the fingerprint and every plans file planned from it are redone. Planning is skipped
    when the plans file exists. nnU-Net's planner calls ``torch.set_num_threads`` with
    ``nnUNet_n_proc_DA``, which fails for 0 (our "no augmentation workers" setting), so the variable
    is raised to 1 while planning and restored afterwards."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                      plan_experiment_dataset)
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    dataset_id = _dataset_id(dataset_name)
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    fingerprint_file = preprocessed / "dataset_fingerprint.json"
    record_file = preprocessed / FINGERPRINT_RECORD
    state, record = raw_dataset_state(dataset_name), read_record(record_file)
    if fingerprint_file.is_file() and record.get("raw") != state:
        logger.warning("%s: the raw dataset differs from the one the fingerprint was made from (%s): redoing the "
                       "fingerprint and the plans", dataset_name, "no record" if not record.get("raw") else
                       ", ".join(k for k in state if record["raw"].get(k) != state[k]))
        fingerprint_file.unlink()
    replan = not _plans_file(dataset_name, plans_identifier).is_file()
    if not fingerprint_file.is_file():
        for identifier in set(record.get("plans_identifiers", [])) - {plans_identifier}:
            logger.warning("%s: deleting %s.json, planned from the previous fingerprint", dataset_name, identifier)
            _plans_file(dataset_name, identifier).unlink(missing_ok=True)
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
        if previous is not None and int(previous) < 1:
            os.environ["nnUNet_n_proc_DA"] = "1"
        try:
            plan_experiment_dataset(dataset_id, overwrite_plans_name=overwrite)
        finally:
            if previous is not None:
                os.environ["nnUNet_n_proc_DA"] = previous
    if plans_identifier not in record["plans_identifiers"]:
        write_record(record_file, {**record, "plans_identifiers": record["plans_identifiers"] + [plans_identifier]})
    return dataset_name


def prepare_dataset(dataset_name_or_id: int | str, overlay: str | os.PathLike = "small_cpu", num_processes: int = 1,
                    plans_identifier: str = "nnUNetPlans", verify: bool = True) -> str:
    """Fingerprint (+ integrity check) -> plan -> overlay -> preprocess labeled + unlabeled -> splits.

    Each step is skipped when its output already exists and its record matches the present raw
    dataset (the fingerprint: labeled cases and dataset.json/glrp_split.json hashes; a preprocessed
    folder: plans hash and exactly the present case identifiers; unlabeled outputs of cases no
    longer in ``unlabeledTr/`` are deleted). nnU-Net's own configurations are planned but not
    preprocessed. Returns the overlay's (first) configuration name. An overlay with several
    configurations gets all of them preprocessed."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset

    from nnunetv2_glrp.dataset_split import write_splits_final
    from nnunetv2_glrp.unlabeled_preprocessing import preprocess_unlabeled

    dataset_name = plan_dataset(dataset_name_or_id, plans_identifier, num_processes, verify)
    dataset_id = _dataset_id(dataset_name)
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
