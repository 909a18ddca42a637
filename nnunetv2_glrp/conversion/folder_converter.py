"""A user's own short-axis cine folder -> nnU-Net raw dataset with the user's label subset.

Files are listed by :mod:`nnunetv2_glrp.conversion.folder_reader` (a filename pattern or a case
table), labels remapped by :mod:`nnunetv2_glrp.conversion.label_map` (``--labels``, written to
``dataset.json`` in the dataset's own consecutive numbering), everything else is the conversion core
(:mod:`nnunetv2_glrp.conversion.core`), as for ACDC: ``imagesTr``/``labelsTr`` hold ``<patient>_ED`` and
``<patient>_ES`` of train/val patients, ``imagesTs``/``labelsTs`` the test patients, ``unlabeledTr``
every frame of the patient's 4D cine (the cine pattern, the table's ``cine`` column, or a 4D image
the labeled frames were taken from) or, without a cine, the ED and ES images. Stacks are stored
base-first: the order is read from the LV/MYO (and RV) labels present; where they cannot tell (no LV
or MYO named, or no decisive cue), ``slice_order`` says how the stacks are stored, else they are kept
as stored. ``glrp_split.json`` records, under ``folder``, the label map and each patient's files.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import SimpleITK as sitk

from nnunetv2_glrp.conversion.core import CineFrame, LabeledCase, dataset_target, write_dataset, write_patient
from nnunetv2_glrp.conversion.folder_reader import (FolderPatient, assign_phases, patients_from_pattern,
                                                    patients_from_table)
from nnunetv2_glrp.conversion.frames import cine_arrays, n_frames, read_labeled_pair
from nnunetv2_glrp.conversion.label_map import LabelMap, parse_labels
from nnunetv2_glrp.conversion.split_file import read_split_file
from nnunetv2_glrp.conversion.splits import split_patients
from nnunetv2_glrp.conversion.writer import RawDatasetBuilder
from nnunetv2_glrp.image_io import read_header

logger = logging.getLogger(__name__)

SLICE_ORDERS = ("base-first", "apex-first")


def _cine_source(patient: FolderPatient) -> Path | None:
    """The patient's cine: the listed one, else the ED image file when it is 4D."""
    if patient.cine is not None:
        return patient.cine
    ed_image = patient.frames[0].image
    return ed_image if read_header(ed_image).GetDimension() == 4 else None


def convert_patient(builder: RawDatasetBuilder, patient: FolderPatient, subset: str, record: dict, labels: LabelMap,
                    slice_order: str | None) -> None:
    """Read, remap, orient and write one patient (see the module docstring)."""
    pid = patient.patient_id
    labeled = []
    for f in patient.frames:
        image, label = read_labeled_pair(f.image, f.label, f.frame, pid, f.phase, labels.remap)
        labeled.append(LabeledCase(f.phase, f.frame, image, label, f.image))
    cine = _cine_source(patient)
    if cine is not None:  # a frame number beyond the cine is an error for test patients too
        count = n_frames(read_header(cine)) if cine.is_file() else 0
        outside = [f"{f.phase} frame {f.frame}" for f in patient.frames if not 1 <= f.frame <= count]
        if outside:
            raise ValueError(f"{pid}: {', '.join(outside)} not in the cine {cine.name} (frames 1..{count})")

    def read_cine(reference: sitk.Image) -> list[CineFrame]:
        if cine is None:
            record["missing_cine"].append(pid)
            return [(c.frame, sitk.GetArrayFromImage(c.image), c.source) for c in labeled]
        return [(n, array, cine) for n, array in enumerate(cine_arrays(cine, reference, pid), start=1)]

    write_patient(builder, pid, subset, record, labeled, read_cine, lv_myo_labels=labels.values_of("LV", "MYO"),
                  rv_labels=labels.values_of("RV"), undecided_order=slice_order)
    record["source_labels"] = labels.describe()
    record.setdefault("folder", {})[pid] = {
        "frames": {f.phase: {"frame": f.frame, "image": os.fspath(f.image.resolve()),
                             "label": os.fspath(f.label.resolve()), "listed": f.where} for f in patient.frames},
        "cine": None if cine is None else os.fspath(cine.resolve())}


def convert_folder(root: str | os.PathLike, dataset_id: int, labels: str | LabelMap, pattern: str | None = None,
                   label_pattern: str | None = None, cine_pattern: str | None = None,
                   table: str | os.PathLike | None = None, split: str = "7:1:2", seed: int = 0,
                   split_file: str | os.PathLike | None = None, slice_order: str | None = None,
                   dataset_name: str = "Folder", raw_root: str | os.PathLike | None = None, overwrite: bool = False,
                   n4: bool = False) -> Path:
    """Convert a user folder to ``<raw_root>/Dataset{id:03d}_{name}`` and return that path.

    Exactly one of ``pattern`` (with optional ``label_pattern``, ``cine_pattern``) and ``table``.
    ``labels``: ``--labels`` text or a :class:`LabelMap`. ``split``/``seed``/``split_file`` as in
    :func:`nnunetv2_glrp.conversion.convert_acdc` (no 'official'). ``slice_order``: how stacks whose
    labels cannot tell the order are stored (None: kept as stored). FileNotFoundError/ValueError naming
    the file or case on bad input; nothing is left in ``raw_root`` on failure."""
    label_map = labels if isinstance(labels, LabelMap) else parse_labels(labels)
    if slice_order is not None and slice_order not in SLICE_ORDERS:
        raise ValueError(f"--slice_order must be one of {', '.join(SLICE_ORDERS)}, got {slice_order!r}")
    if (pattern is None) == (table is None):
        raise ValueError("give either --pattern or --table (exactly one)")
    raw_root, name = dataset_target(dataset_id, dataset_name, raw_root)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"source folder not found: {root}")
    if pattern is not None:
        listed = patients_from_pattern(root, pattern, label_pattern, cine_pattern)
    else:
        listed = patients_from_table(root, Path(table))
    patients = {pid: assign_phases(p) for pid, p in listed.items()}
    if not (label_map.values_of("LV", "MYO")) and slice_order is None:
        logger.warning("--labels names neither LV nor MYO: the slice order cannot be read from the labels and "
                       "stacks are kept as stored (give --slice_order base-first|apex-first)")
    provenance = None
    if split_file is not None:
        sets, provenance = read_split_file(split_file, list(patients))
        split, seed = "file", None
    else:
        if split == "official":
            raise ValueError("split='official' exists for ACDC only; give a 'train:val:test' ratio or --split_file")
        sets = split_patients(list(patients), split=split, seed=seed)
    return write_dataset(
        raw_root, name, sets, split, seed, root,
        lambda builder, pid, subset, record: convert_patient(builder, patients[pid], subset, record, label_map,
                                                             slice_order),
        {"description": "user short-axis cine MRI folder converted by nnunetv2_glrp",
         "channel_names": {"0": "cineMRI"}, "labels": label_map.dataset_labels()},
        overwrite=overwrite, n4=n4, n4_note="one per patient, fitted on the ED image, applied to all frames",
        split_file=provenance)
