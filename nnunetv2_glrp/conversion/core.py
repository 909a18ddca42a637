"""The conversion core every dataset reader shares: target checks, split, orientation, writing, record.

A reader (ACDC, Sunnybrook) finds its patients and, per patient, hands :func:`write_patient` the two
labeled frames (ED, ES: image and label on one grid) and a function that reads the patient's cine
frames on demand. The core checks that ED and ES share their grid, decides the slice order from
the labels (:mod:`nnunetv2_glrp.conversion.orientation`), flips every stack of the patient to
base-first when needed, writes the labeled cases (``imagesTr``/``labelsTr``, ``imagesTs``/``labelsTs``
for test patients) and, for train/val patients only, every cine frame to ``unlabeledTr``, and fills
the split record. :func:`write_dataset` draws nothing: it builds the folder atomically
(:class:`~nnunetv2_glrp.conversion.writer.RawDatasetBuilder`), converts every patient, writes
``dataset.json`` and ``glrp_split.json`` and renames the folder into place, or removes it on any error.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import SimpleITK as sitk
from nnunetv2_glrp.progress import tqdm

from nnunetv2_glrp.conversion.orientation import (LV_MYO_LABELS, RV_LABELS, SliceOrder, detect_slice_order,
                                                  flip_slices)
from nnunetv2_glrp.conversion.writer import N4Config, RawDatasetBuilder, existing_datasets_with_id, fit_log_bias
from nnunetv2_glrp.dataset_split import SPLIT_FILE, new_split_record
from nnunetv2_glrp.image_io import geometry_mismatch

logger = logging.getLogger(__name__)


@dataclass
class LabeledCase:
    """One labeled frame of a patient as its reader found it (stored slice order, not yet flipped)."""

    phase: str  # "ED" | "ES"
    frame: int  # 1-based cine frame number
    image: sitk.Image
    label: sitk.Image  # uint8, on exactly the image's grid
    source: Path


#: (frame number, array [Z, Y, X] in the reader's slice order, source file) of one cine frame
CineFrame = tuple[int, np.ndarray, Path]


def dataset_target(dataset_id: int, dataset_name: str, raw_root: str | os.PathLike | None) -> tuple[Path, str]:
    """(raw root, ``DatasetXXX_Name``) after checking the id, the name and that no other dataset has the id.

    ``raw_root`` defaults to ``$nnUNet_raw`` read at call time."""
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
    return raw_root, name


def write_patient(builder: RawDatasetBuilder, pid: str, subset: str, record: dict, labeled: list[LabeledCase],
                  read_cine: Callable[[sitk.Image], list[CineFrame]],
                  lv_myo_labels: tuple[int, ...] = LV_MYO_LABELS,
                  rv_labels: tuple[int, ...] = RV_LABELS, undecided_order: str | None = None) -> SliceOrder:
    """Orient and write one patient's labeled cases and, unless ``subset`` is "test", its cine frames.

    ``lv_myo_labels``/``rv_labels``: the label values the slice-order rule reads
    (``rv_labels=()`` for a dataset without RV). ``undecided_order`` ("base-first" | "apex-first"):
    the stored order of a patient whose labels cannot tell (the user's ``--slice_order``); None keeps
    such a stack as stored. ``read_cine(reference)`` is called only for
    train/val patients, with the ED image as the reader
    stored it; cine frames get the (oriented) ED image's geometry. Returns the slice order found."""
    problem = geometry_mismatch(labeled[0].image, labeled[1].image)
    if problem is not None:
        raise ValueError(f"{pid}: {labeled[0].phase} and {labeled[1].phase} images differ in {problem}")
    order = detect_slice_order([sitk.GetArrayFromImage(c.label) for c in labeled], lv_myo_labels, rv_labels)
    if order.stored == "undecided" and undecided_order is not None:
        if undecided_order not in ("base-first", "apex-first"):
            raise ValueError(f"slice order must be 'base-first' or 'apex-first', got {undecided_order!r}")
        order = SliceOrder(undecided_order, undecided_order == "apex-first",
                           f"{order.evidence}; the given slice order {undecided_order} used instead")
    record["slice_order"][pid] = order.to_json()
    record["n_slices"][pid] = labeled[0].image.GetSize()[2]
    images_dir, labels_dir = ("imagesTr", "labelsTr") if subset != "test" else ("imagesTs", "labelsTs")
    reference = flip_slices(labeled[0].image) if order.flipped else labeled[0].image
    log_bias = fit_log_bias(reference, builder.n4) if builder.n4 is not None else None
    for c in labeled:
        image = flip_slices(c.image) if order.flipped else c.image
        label = flip_slices(c.label) if order.flipped else c.label
        case = f"{pid}_{c.phase}"
        builder.write_image(image, images_dir, f"{case}_0000.nii.gz", log_bias=log_bias)
        builder.write_image(label, labels_dir, f"{case}.nii.gz", is_label=True)
        record["cases"][case] = {"patient": pid, "set": subset, "phase": c.phase, "frame": c.frame,
                                 "source": os.fspath(Path(c.source).resolve()), "kind": "labeled"}
    if subset == "test":
        return order
    phase_of_frame = {c.frame: c.phase for c in labeled}
    for number, array, src in read_cine(labeled[0].image):
        image = sitk.GetImageFromArray(np.ascontiguousarray(array[::-1] if order.flipped else array))
        image.CopyInformation(reference)
        case = f"{pid}_t{number:02d}"
        builder.write_image(image, "unlabeledTr", f"{case}_0000.nii.gz", log_bias=log_bias)
        record["cases"][case] = {"patient": pid, "set": subset, "phase": phase_of_frame.get(number), "frame": number,
                                 "source": os.fspath(Path(src).resolve()), "kind": "unlabeled"}
    return order


def write_dataset(raw_root: Path, name: str, sets: dict[str, list[str]], split: str, seed: int, source_root: Path,
                  convert_patient: Callable[[RawDatasetBuilder, str, str, dict], None], dataset_json: dict,
                  overwrite: bool = False, n4: bool = False, n4_note: str | None = None,
                  split_file: dict | None = None) -> Path:
    """Build ``raw_root/name`` from the patients of ``sets`` and return its path.

    ``convert_patient(builder, patient, subset, record)`` writes one patient (usually through
    :func:`write_patient`); ``dataset_json`` gives description, channel names and labels, the core
    adds the name, the case counts, the file ending and the split file's name. FileExistsError when
    the dataset exists and ``overwrite`` is False; nothing is left in ``raw_root`` on failure.
    ``split_file`` (path, sha256 of a split read from a file) is recorded as ``split_file``."""
    subset_of = {pid: s for s in ("train", "val", "test") for pid in sets[s]}
    n4_config = N4Config() if n4 else None
    builder = RawDatasetBuilder(raw_root, name, overwrite=overwrite, n4=n4_config)
    n4_record = None if n4_config is None else {**builder.n4_record(), "bias_field": n4_note}
    record = new_split_record(split, seed, sets, n4_record, os.fspath(Path(source_root).resolve()))
    if split_file is not None:
        record["split_file"] = split_file
    try:
        for pid in tqdm(sorted(subset_of), desc=f"converting {name}", unit="patient"):
            convert_patient(builder, pid, subset_of[pid], record)
        cases = record["cases"].values()
        builder.write_json("dataset.json", {
            "name": name, **dataset_json,
            "numTraining": sum(1 for c in cases if c["kind"] == "labeled" and c["set"] != "test"),
            "numTest": sum(1 for c in cases if c["set"] == "test"),
            "numUnlabeled": sum(1 for c in cases if c["kind"] == "unlabeled"),
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
