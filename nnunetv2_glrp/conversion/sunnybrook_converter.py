"""Sunnybrook Cardiac Data layout -> nnU-Net raw dataset labelled LV + MYO (no RV).

Same contract and output as :func:`nnunetv2_glrp.conversion.convert_acdc` (one conversion core,
:mod:`nnunetv2_glrp.conversion.core`), read by :mod:`nnunetv2_glrp.conversion.sunnybrook_reader`:
``imagesTr``/``labelsTr`` hold ``<patient>_ED`` and ``<patient>_ES`` of train/val patients,
``imagesTs``/``labelsTs`` those of test patients, ``unlabeledTr`` every cine frame of train/val
patients (``<patient>_tNN_0000.nii.gz``, NN the 1-based frame within the cardiac cycle; never a test
patient). Labels, our own numbering written to ``dataset.json``: background 0, LV 1 (cavity inside
the endocardial contour), MYO 2 (between the endocardial and epicardial contours). Stacks are stored
base-first (flipped from the labels, geometry kept). The patient id is the DICOM folder's name.

``glrp_split.json`` also records, per patient under ``sunnybrook``: the contour folder, the grid
(frames x slices), the ED/ES frames and the rule that chose ED; per labeled case: ``contoured_slices``
(indices in the stored, base-first order), ``n_contoured_slices`` and ``labels_present``. Slices
without a contour are background in the label map: consumers that want to treat them as unknown can
read ``contoured_slices``. On the studied data ES has endocardial contours only, so ES labels hold
LV but no MYO (the myocardium there is background, not absent): see docs/conversion.md.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.conversion.core import CineFrame, LabeledCase, dataset_target, write_dataset, write_patient
from nnunetv2_glrp.conversion.split_file import read_split_file
from nnunetv2_glrp.conversion.splits import split_patients
from nnunetv2_glrp.conversion.sunnybrook_reader import (LV, MYO, SunnybrookPatient, find_patients, read_cine,
                                                        read_labeled_frames)
from nnunetv2_glrp.conversion.validation import check_3d_image, check_labels
from nnunetv2_glrp.conversion.writer import RawDatasetBuilder

LABELS = {"background": 0, "LV": LV, "MYO": MYO}


def _convert_patient(builder: RawDatasetBuilder, patient: SunnybrookPatient, subset: str, record: dict) -> None:
    pid = patient.patient_id
    grid = read_cine(patient)
    ed, es, rule = read_labeled_frames(patient, grid)
    labeled = []
    for frame in (ed, es):
        image = grid.frames[frame.frame - 1]
        source = patient.dicom_folder
        check_3d_image(image, pid, source / f"frame {frame.frame}")
        label = sitk.GetImageFromArray(frame.label)
        label.CopyInformation(image)
        check_labels(label, pid, source / f"frame {frame.frame} label")
        labeled.append(LabeledCase(frame.phase, frame.frame, image, label, source))

    def read_frames(reference: sitk.Image) -> list[CineFrame]:
        return [(n, sitk.GetArrayFromImage(image), patient.dicom_folder) for n, image in enumerate(grid.frames, 1)]

    order = write_patient(builder, pid, subset, record, labeled, read_frames, lv_myo_labels=(LV, MYO), rv_labels=())
    n_slices = grid.frames[0].GetSize()[2]
    for frame in (ed, es):
        stored = sorted(n_slices - 1 - z if order.flipped else z for z in frame.contoured_slices)
        present = [name for name, value in LABELS.items() if value and (frame.label == value).any()]
        record["cases"][f"{pid}_{frame.phase}"].update(
            {"contoured_slices": stored, "n_contoured_slices": len(stored), "labels_present": present})
    voxel_ml = float(np.prod(grid.frames[0].GetSpacing())) / 1000
    record.setdefault("sunnybrook", {})[pid] = {
        "contour_folder": os.fspath(patient.contour_folder.resolve()), "n_frames": len(grid.frames),
        "n_slices": n_slices, "ed_frame": ed.frame, "es_frame": es.frame, "ed_rule": rule,
        "slice_gap_mm": float(grid.frames[0].GetSpacing()[2]),
        "lv_ml": {f.phase: float((f.label == LV).sum() * voxel_ml) for f in (ed, es)},
    }


def convert_sunnybrook(root: str | os.PathLike, dataset_id: int, split: str = "7:1:2", seed: int = 0,
                       dataset_name: str = "Sunnybrook", raw_root: str | os.PathLike | None = None,
                       overwrite: bool = False, split_file: str | os.PathLike | None = None) -> Path:
    """Convert a Sunnybrook-layout folder to ``<raw_root>/Dataset{id:03d}_{name}`` and return that path.

    ``split``: 'a:b:c' (default '7:1:2', seeded patient-level shuffle); ``split_file``: a JSON or CSV
    split taken as given instead (recorded as split "file", seed null). ``raw_root`` defaults to
    ``$nnUNet_raw`` read at call time. Raises FileNotFoundError/ValueError naming the patient, the
    file and the problem on bad input, FileExistsError when the dataset exists and ``overwrite`` is
    False; nothing is left in ``raw_root`` on failure."""
    raw_root, name = dataset_target(dataset_id, dataset_name, raw_root)
    if split == "official" and split_file is None:
        raise ValueError("split='official' exists for ACDC only; give a 'train:val:test' ratio for Sunnybrook")
    patients = {p.patient_id: p for p in find_patients(root)}
    provenance = None
    if split_file is not None:
        sets, provenance = read_split_file(split_file, list(patients))
        split, seed = "file", None
    else:
        sets = split_patients(list(patients), split=split, seed=seed)
    return write_dataset(
        raw_root, name, sets, split, seed, Path(root),
        lambda builder, pid, subset, record: _convert_patient(builder, patients[pid], subset, record),
        {"description": "Sunnybrook-layout short-axis cine MRI (LV + MYO contours) converted by nnunetv2_glrp",
         "channel_names": {"0": "cineMRI"}, "labels": LABELS},
        overwrite=overwrite, split_file=provenance)
