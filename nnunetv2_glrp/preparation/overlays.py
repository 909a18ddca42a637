"""Plans overlays: new configurations (``nnunet_cpu``, ``paper_unet_cpu``, ``paper_unet``) added to nnU-Net's own
plans file.

Why its own module inside :mod:`nnunetv2_glrp.preparation`: applying an overlay is one step of the
prepare pipeline (after planning, before preprocessing) and ``nnUNetv2_glrp apply-plans`` runs it
alone; the overlay format is a user-facing schema of its own, unrelated to the fingerprint and
staleness bookkeeping of the other steps, so it is kept apart from them. The overlay definitions
are the JSON files of the repository's ``plans/`` folder (:data:`PLANS_FOLDER`).

Overlay schema (``plans/*.json``; checked field by field in :mod:`.overlay_schema`)::

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
from nnunetv2_glrp.environment import shipped_folder
from nnunetv2_glrp.preparation.overlay_schema import OverlayError, check_resolved, load_overlay
from nnunetv2_glrp.preparation.records import plans_file as _plans_file

logger = logging.getLogger(__name__)

PLANS_FOLDER = shipped_folder("plans", must_exist=False)
OVERLAY_MARKER = "glrp_overlay"
#: overlays renamed before 1.0 (old bare name -> new): not aliases, only named in the error for the old name.
#: Plans files they were applied to keep the old configurations (``paper_cpu``, ``glrp_paper``) and their data.
RENAMED_OVERLAYS = {"paper": "paper_unet", "paper_cpu": "paper_unet_cpu"}


def resolve_overlay_path(overlay: str | os.PathLike) -> Path:
    """A path to an overlay JSON, or a bare name (``nnunet_cpu``, ``paper_unet_cpu``, ``paper_unet``) of the
    repository's ``plans/``."""
    path = Path(overlay)
    if path.is_file():
        return path
    named = PLANS_FOLDER / (path.name if path.suffix == ".json" else f"{path.name}.json")
    if path.parent == Path(".") and named.is_file():
        return named
    known = sorted(p.stem for p in PLANS_FOLDER.glob("*.json"))
    renamed = RENAMED_OVERLAYS.get(path.stem) if path.parent == Path(".") else None
    hint = f"; the overlay {path.stem!r} is now called {renamed!r}" if renamed else ""
    raise FileNotFoundError(f"plans overlay {overlay!r} not found (neither a file nor one of {known} in "
                            f"{PLANS_FOLDER}){hint}")


def _deep_merge(base: dict, update: dict) -> dict:
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _build_configurations(overlay_file: Path, plans: dict, plans_identifier: str) -> dict[str, dict]:
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    overlay = load_overlay(overlay_file)
    manager = PlansManager(plans)
    built = {}
    for name, spec in overlay["configurations"].items():
        parent_name = spec["inherits_from"]
        if parent_name not in plans["configurations"] or parent_name in overlay["configurations"]:
            raise OverlayError(overlay_file, f"configurations.{name}.inherits_from",
                               f"{parent_name!r} is not one of nnU-Net's configurations {sorted(plans['configurations'])}")
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
        check_resolved(overlay_file, name, entry, dims=len(parent["spacing"]))
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
    plans = json.loads(plans_file.read_text(encoding="utf-8"))
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
