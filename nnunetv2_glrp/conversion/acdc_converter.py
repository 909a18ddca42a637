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
``phase`` is "ED"/"ES" when the frame is the ED/ES frame, else null.
"""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2_glrp.conversion.acdc_reader import AcdcPatient, find_patients, read_cine_frames, read_labeled_frame
from nnunetv2_glrp.conversion.orientation import detect_slice_order, flip_slices
from nnunetv2_glrp.conversion.splits import split_patients
from nnunetv2_glrp.conversion.writer import N4Config, RawDatasetBuilder, existing_datasets_with_id, fit_log_bias
from nnunetv2_glrp.dataset_split import SPLIT_FILE, new_split_record
from nnunetv2_glrp.image_io import geometry_mismatch

logger = logging.getLogger(__name__)

LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}


def _convert_patient(builder: RawDatasetBuilder, patient: AcdcPatient, subset: str, record: dict) -> None:
    """Validate, orient and write one patient's labeled (and, for train/val, unlabeled) cases."""
    pid = patient.patient_id
    frames = [read_labeled_frame(patient, phase) for phase in ("ED", "ES")]
    problem = geometry_mismatch(frames[0].image, frames[1].image)
    if problem is not None:
        raise ValueError(f"{pid}: ED and ES images differ in {problem}")
    order = detect_slice_order([sitk.GetArrayFromImage(f.label) for f in frames])
    record["slice_order"][pid] = order.to_json()
    record["n_slices"][pid] = frames[0].image.GetSize()[2]
    images_dir, labels_dir = ("imagesTr", "labelsTr") if subset != "test" else ("imagesTs", "labelsTs")
    reference = flip_slices(frames[0].image) if order.flipped else frames[0].image
    log_bias = fit_log_bias(reference, builder.n4) if builder.n4 is not None else None
    for f in frames:
        image = flip_slices(f.image) if order.flipped else f.image
        label = flip_slices(f.label) if order.flipped else f.label
        case = f"{pid}_{f.phase}"
        builder.write_image(image, images_dir, f"{case}_0000.nii.gz", log_bias=log_bias)
        builder.write_image(label, labels_dir, f"{case}.nii.gz", is_label=True)
        record["cases"][case] = {"patient": pid, "set": subset, "phase": f.phase, "frame": f.frame,
                                 "source": os.fspath(f.image_path.resolve()), "kind": "labeled"}
    if subset == "test":
        return
    cine = read_cine_frames(patient, frames[0].image)
    if cine is None:
        message = f"{pid}: no 4D cine file {patient.cine_path.name}; using ED and ES only as unlabeled images"
        warnings.warn(message, stacklevel=3)
        logger.warning(message)
        record["missing_cine"].append(pid)
        cine = [sitk.GetArrayFromImage(f.image) for f in frames]
        frame_numbers = [f.frame for f in frames]
        source = [f.image_path for f in frames]
    else:
        if len(cine) != patient.n_frames:
            logger.warning("%s: 4D cine has %d frames, Info.cfg says NbFrame = %d; using the %d frames of the file",
                           pid, len(cine), patient.n_frames, len(cine))
        frame_numbers = list(range(1, len(cine) + 1))
        source = [patient.cine_path] * len(cine)
    for array, number, src in zip(cine, frame_numbers, source):
        image = sitk.GetImageFromArray(np.ascontiguousarray(array[::-1] if order.flipped else array))
        image.CopyInformation(reference)
        case = f"{pid}_t{number:02d}"
        builder.write_image(image, "unlabeledTr", f"{case}_0000.nii.gz", log_bias=log_bias)
        phase = "ED" if number == patient.ed else "ES" if number == patient.es else None
        record["cases"][case] = {"patient": pid, "set": subset, "phase": phase, "frame": number,
                                 "source": os.fspath(Path(src).resolve()), "kind": "unlabeled"}


def convert_acdc(acdc_root: str | os.PathLike, dataset_id: int, split: str = "7:1:2", seed: int = 0, n4: bool = False,
                 dataset_name: str = "ACDC", raw_root: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
    """Convert an ACDC-layout folder to ``<raw_root>/Dataset{id:03d}_{name}`` and return that path.

    ``split``: 'a:b:c' (default '7:1:2', seeded shuffle over all patients of training/ and testing/)
    or 'official' (testing/ = test; val = round(1/8) of training/, seeded). ``raw_root`` defaults to
    ``$nnUNet_raw`` read at call time. Raises FileNotFoundError/ValueError naming the patient and
    the problem on bad input, FileExistsError when the dataset exists and ``overwrite`` is False;
    nothing is left in ``raw_root`` on failure."""
    if not 1 <= int(dataset_id) <= 999:
        raise ValueError(f"dataset id must be in 1..999, got {dataset_id}")
    if not dataset_name or any(c in dataset_name for c in "/\\ ") or dataset_name.startswith("."):
        raise ValueError(f"invalid dataset name {dataset_name!r}")
    if raw_root is None:
        if not os.environ.get("nnUNet_raw"):
            raise ValueError("nnUNet_raw is not set and no raw_root was given")
        raw_root = os.environ["nnUNet_raw"]
    raw_root = Path(raw_root)
    name = f"Dataset{int(dataset_id):03d}_{dataset_name}"
    clash = [p.name for p in existing_datasets_with_id(raw_root, int(dataset_id)) if p.name != name]
    if clash:
        raise ValueError(f"dataset id {dataset_id} is already used by {', '.join(clash)} in {raw_root}")

    patients = find_patients(acdc_root)
    by_id = {p.patient_id: p for p in patients}
    official_test = [p.patient_id for p in patients if p.subset == "testing"]
    if split == "official" and not official_test:
        raise ValueError(f"split='official' needs a testing/ folder with patients under {acdc_root}")
    sets = split_patients(list(by_id), split=split, seed=seed, official_test=official_test)
    subset_of = {pid: s for s in ("train", "val", "test") for pid in sets[s]}

    n4_config = N4Config() if n4 else None
    builder = RawDatasetBuilder(raw_root, name, overwrite=overwrite, n4=n4_config)
    n4_record = None if n4_config is None else {
        **builder.n4_record(), "bias_field": "one per patient, fitted on the ED image, applied to all frames"}
    record = new_split_record(split, seed, sets, n4_record, os.fspath(Path(acdc_root).resolve()))
    try:
        for pid in tqdm(sorted(by_id), desc=f"converting {name}", unit="patient"):
            _convert_patient(builder, by_id[pid], subset_of[pid], record)
        n_training = sum(1 for c in record["cases"].values() if c["kind"] == "labeled" and c["set"] != "test")
        builder.write_json("dataset.json", {
            "name": name, "description": "ACDC-layout short-axis cine MRI converted by nnunetv2_glrp",
            "channel_names": {"0": "cineMRI"}, "labels": LABELS, "numTraining": n_training,
            "numTest": sum(1 for c in record["cases"].values() if c["set"] == "test"),
            "numUnlabeled": sum(1 for c in record["cases"].values() if c["kind"] == "unlabeled"),
            "file_ending": ".nii.gz", "glrp_split": SPLIT_FILE,
        })
        builder.write_json(SPLIT_FILE, record)
        flipped = [p for p, o in record["slice_order"].items() if o["flipped"]]
        logger.info("%s: %d train / %d val / %d test patients, %d flipped to base-first%s", name, len(sets["train"]),
                    len(sets["val"]), len(sets["test"]), len(flipped), f" ({', '.join(flipped)})" if flipped else "")
        return builder.commit()
    except BaseException:
        builder.abort()
        raise
