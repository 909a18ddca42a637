"""Plans overlays: new configurations (``nnunet_cpu``, ``paper_cpu``, ``paper``) added to nnU-Net's own plans file.

Why its own module inside :mod:`nnunetv2_glrp.preparation`: applying an overlay is one step of the
prepare pipeline (after planning, before preprocessing) and ``nnUNetv2_glrp apply-plans`` runs it
alone; the overlay format is a user-facing schema of its own, unrelated to the fingerprint and
staleness bookkeeping of the other steps, so it is kept apart from them. The overlay definitions
are the JSON files of the repository's ``plans/`` folder (:data:`PLANS_FOLDER`).

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
from nnunetv2_glrp.preparation.records import plans_file as _plans_file

logger = logging.getLogger(__name__)

PLANS_FOLDER = Path(__file__).resolve().parents[2] / "plans"
OVERLAY_MARKER = "glrp_overlay"


def resolve_overlay_path(overlay: str | os.PathLike) -> Path:
    """A path to an overlay JSON, or a bare name (``nnunet_cpu``, ``paper_cpu``, ``paper``) of the repository's ``plans/``."""
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
        raise ValueError(f"{overlay_file}: expected a non-empty 'configurations' object (schema: see nnunetv2_glrp.preparation.overlays)")
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
