"""ACDC release -> nnU-Net raw dataset with a patient-level split and the unlabeled cine frames.

Output ``$nnUNet_raw/DatasetXXX_Name/``: ``imagesTr``/``labelsTr`` hold ED and ES of train and val
patients (``patient001_ED_0000.nii.gz`` / ``patient001_ED.nii.gz``), ``imagesTs``/``labelsTs`` the
test patients, ``unlabeledTr`` every cine frame of train/val patients (``patient001_t01_0000.nii.gz``,
frame numbers 1-based as in ACDC's ``frameYY`` names; never test patients), ``dataset.json`` and
``glrp_split.json`` (split, seed, per-case provenance, slice order, slice counts, N4 settings).
Every stack is stored base-first: apex-first patients are flipped along z with their geometry
updated so voxels keep their physical position (image, label and every cine frame alike). With
``n4=True`` one N4 bias field is fitted per patient, on the ED image, and divided out of ED, ES and
every cine frame (the coil sensitivity does not change within a cine acquisition; one fit per
patient instead of one per frame keeps N4 affordable for 30-frame cines). Cine
frames get the ED image's geometry (the 4D header's 4th axis is time). For unlabeled cases,
``phase`` is "ED"/"ES" when the frame is the ED/ES frame, else null. Orientation, writing and the
record are the conversion core's (:mod:`nnunetv2_glrp.conversion.core`); this module reads ACDC.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import SimpleITK as sitk

from nnunetv2_glrp.conversion.acdc_reader import AcdcPatient, find_patients, read_cine_frames, read_labeled_frame
from nnunetv2_glrp.conversion.core import CineFrame, LabeledCase, dataset_target, write_dataset, write_patient
from nnunetv2_glrp.conversion.split_file import read_split_file
from nnunetv2_glrp.conversion.splits import split_patients
from nnunetv2_glrp.conversion.writer import RawDatasetBuilder

logger = logging.getLogger(__name__)

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


def _convert_patient(builder: RawDatasetBuilder, patient: AcdcPatient, subset: str, record: dict) -> None:
    """Validate, orient and write one patient's labeled (and, for train/val, unlabeled) cases."""
    pid = patient.patient_id
    frames = [read_labeled_frame(patient, phase) for phase in ("ED", "ES")]
    labeled = [LabeledCase(f.phase, f.frame, f.image, f.label, f.image_path) for f in frames]

    def read_cine(reference: sitk.Image) -> list[CineFrame]:
        cine = read_cine_frames(patient, reference)
        if cine is None:
            message = f"{pid}: no 4D cine file {patient.cine_path.name}; using ED and ES only as unlabeled images"
            logger.warning(message)
            record["missing_cine"].append(pid)
            return [(f.frame, sitk.GetArrayFromImage(f.image), f.image_path) for f in frames]
        if len(cine) != patient.n_frames:
            logger.warning("%s: 4D cine has %d frames, Info.cfg says NbFrame = %d; using the %d frames of the file",
                           pid, len(cine), patient.n_frames, len(cine))
        return [(number, array, patient.cine_path) for number, array in enumerate(cine, start=1)]

    write_patient(builder, pid, subset, record, labeled, read_cine)


def convert_acdc(acdc_root: str | os.PathLike, dataset_id: int, split: str = "7:1:2", seed: int = 0, n4: bool = False,
                 dataset_name: str = "ACDC", raw_root: str | os.PathLike | None = None, overwrite: bool = False,
                 split_file: str | os.PathLike | None = None) -> Path:
    """Convert an ACDC-layout folder to ``<raw_root>/Dataset{id:03d}_{name}`` and return that path.

    ``split``: 'a:b:c' (default '7:1:2', seeded shuffle over all patients of training/ and testing/)
    or 'official' (testing/ = test; val = round(1/8) of training/, seeded). ``split_file``: a JSON or
    CSV split taken as given instead (:mod:`nnunetv2_glrp.conversion.split_file`; ``split`` and
    ``seed`` are then ignored and recorded as "file" and null). ``raw_root`` defaults to
    ``$nnUNet_raw`` read at call time. Raises FileNotFoundError/ValueError naming the patient and
    the problem on bad input, FileExistsError when the dataset exists and ``overwrite`` is False;
    nothing is left in ``raw_root`` on failure."""
    raw_root, name = dataset_target(dataset_id, dataset_name, raw_root)
    patients = find_patients(acdc_root)
    by_id = {p.patient_id: p for p in patients}
    official_test = [p.patient_id for p in patients if p.subset == "testing"]
    provenance = None
    if split_file is not None:
        sets, provenance = read_split_file(split_file, list(by_id))
        split, seed = "file", None
    else:
        if split == "official" and not official_test:
            raise ValueError(f"split='official' needs a testing/ folder with patients under {acdc_root}")
        sets = split_patients(list(by_id), split=split, seed=seed, official_test=official_test)
    return write_dataset(
        raw_root, name, sets, split, seed, Path(acdc_root),
        lambda builder, pid, subset, record: _convert_patient(builder, by_id[pid], subset, record),
        {"description": "ACDC-layout short-axis cine MRI converted by nnunetv2_glrp",
         "channel_names": {"0": "cineMRI"}, "labels": LABELS},
        overwrite=overwrite, n4=n4, n4_note="one per patient, fitted on the ED image, applied to all frames",
        split_file=provenance)
