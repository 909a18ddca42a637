"""M&Ms layout -> nnU-Net raw dataset in ACDC's label numbering, vendor and centre recorded per case.

Read by :mod:`nnunetv2_glrp.conversion.mnms_reader`; written by the conversion core as ACDC is:
``<subject>_ED``/``<subject>_ES`` labeled cases, every cine frame of train/val subjects in
``unlabeledTr`` (the 3D ED/ES layout without a ``_SA_CINE`` file has no cine: ED and ES are the unlabeled
images; with one, its frames, ED/ES numbered by the CSV or by the cine frame each image equals), stacks stored
base-first (M&Ms vendors store apex-first or base-first: detected per subject from the labels). Labels
M&Ms 1 LV, 2 MYO, 3 RV are written as ACDC's 1 RV, 2 MYO, 3 LV. ``split="vendor:X"`` holds out every
subject of vendor X as the test set; the others are split train:val 7:1 by a seeded shuffle.
``glrp_split.json`` gets ``vendor`` and ``centre`` on every case, ``mnms`` per subject (layout, vendor,
centre, ED/ES frames, files) and ``mnms_source`` (the information CSV used, the unlabeled subjects
skipped, the CSV rows without files).
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.conversion.core import CineFrame, LabeledCase, dataset_target, write_dataset, write_patient
from nnunetv2_glrp.conversion.frames import cine_arrays, matching_frame, read_labeled_pair
from nnunetv2_glrp.conversion.label_map import MNMS_LABELS
from nnunetv2_glrp.conversion.mnms_reader import PHASES, MnmsSubject, find_subjects
from nnunetv2_glrp.conversion.split_file import read_split_file
from nnunetv2_glrp.conversion.splits import split_patients
from nnunetv2_glrp.conversion.writer import RawDatasetBuilder

logger = logging.getLogger(__name__)


def _cine_frames(subject: MnmsSubject, images: dict[str, sitk.Image]
                 ) -> tuple[dict[str, int], str | None, list[np.ndarray] | None]:
    """({phase: 1-based frame}, where they came from: "csv", "cine" (the frame of the 3D layout's cine each 3D
    image equals) or None: unknown, ED 1 and ES 2; the cine's frames when they were read to find them, else None).
    The cine is read here only when the CSV has no ED/ES for a 3D-layout subject with a cine file."""
    sid = subject.subject_id
    if len(subject.frames) == 2:
        return dict(subject.frames), "csv", None
    if subject.layout != "3d" or subject.cine is None:
        return {"ED": 1, "ES": 2}, None, None
    cine = cine_arrays(subject.cine, images["ED"], sid)
    frames = {}
    for phase in PHASES:
        number, difference = matching_frame(sitk.GetArrayViewFromImage(images[phase]), cine)
        if number is None:
            image = subject.files_3d[(phase, "image")].name
            raise ValueError(f"{sid}: the {phase} image {image} equals no single frame of the cine {subject.cine.name} "
                             f"(closest: {difference:.2%} of its intensity range); "
                             "give ED and ES (0-based frame indices) in the information CSV (--info)")
        frames[phase] = number
    return frames, "cine", cine


def _labeled(subject: MnmsSubject) -> tuple[list[LabeledCase], str | None, list[np.ndarray] | None]:
    """The ED and ES cases, where their frame numbers came from and the cine's frames when they had to be read
    to find them (``_cine_frames``)."""
    sid, pairs = subject.subject_id, {}
    for phase in PHASES:
        if subject.layout == "4d":
            image_path, label_path, frame = subject.cine, subject.cine_label, subject.frames[phase]
        else:
            image_path, label_path, frame = subject.files_3d[(phase, "image")], subject.files_3d[(phase, "label")], None
        image, label = read_labeled_pair(image_path, label_path, frame, sid, phase, MNMS_LABELS.remap)
        if not sitk.GetArrayViewFromImage(label).any():
            where = f"frame {frame} (CSV index {frame - 1})" if frame else label_path.name
            raise ValueError(f"{sid}: no labeled voxel at {phase} {where} of {label_path.name}; are the CSV's ED/ES "
                             "0-based frame indices?")
        pairs[phase] = (image, label, image_path)
    frames, frames_from, cine = _cine_frames(subject, {p: pair[0] for p, pair in pairs.items()})
    if frames["ED"] == frames["ES"]:
        raise ValueError(f"{sid}: ED and ES are the same frame ({frames['ED']}); they must differ")
    return [LabeledCase(p, frames[p], *pairs[p]) for p in PHASES], frames_from, cine


def _convert_subject(builder: RawDatasetBuilder, subject: MnmsSubject, subset: str, record: dict) -> None:
    sid = subject.subject_id
    labeled, frames_from, cine_3d = _labeled(subject)

    def read_cine(reference: sitk.Image) -> list[CineFrame]:
        if subject.layout == "3d" and subject.cine is None:
            record["missing_cine"].append(sid)
            return [(c.frame, sitk.GetArrayFromImage(c.image), c.source) for c in labeled]
        arrays = cine_3d if cine_3d is not None else cine_arrays(subject.cine, reference, sid)
        return [(n, a, subject.cine) for n, a in enumerate(arrays, start=1)]

    write_patient(builder, sid, subset, record, labeled, read_cine, lv_myo_labels=MNMS_LABELS.values_of("LV", "MYO"),
                  rv_labels=MNMS_LABELS.values_of("RV"))
    for case in record["cases"].values():
        if case["patient"] == sid:
            case.update(vendor=subject.vendor, centre=subject.centre)
    if subject.layout == "4d":
        files = {"cine": os.fspath(subject.cine.resolve()), "cine_label": os.fspath(subject.cine_label.resolve())}
    else:
        files = {f"{p}_{k}": os.fspath(v.resolve()) for (p, k), v in subject.files_3d.items()}
        if subject.cine is not None:
            files["cine"] = os.fspath(subject.cine.resolve())
    record.setdefault("mnms", {})[sid] = {"layout": subject.layout, "vendor": subject.vendor, "centre": subject.centre,
                                          "ed_frame": labeled[0].frame, "es_frame": labeled[1].frame,
                                          "frames_known": frames_from is not None, "frames_from": frames_from,
                                          "files": files}


def vendor_split(subjects: list[MnmsSubject], vendor: str, seed: int) -> dict[str, list[str]]:
    """Test = every subject of ``vendor``; the rest train:val 7:1 (seeded). ValueError on an unknown vendor."""
    vendors = sorted({s.vendor for s in subjects if s.vendor is not None})
    unknown = [s.subject_id for s in subjects if s.vendor is None]
    if unknown:
        raise ValueError(f"--split vendor:{vendor} needs every subject's vendor; none in the information CSV for "
                         f"{', '.join(unknown[:10])}")
    if vendor not in vendors:
        raise ValueError(f"--split vendor:{vendor}: no subject of vendor {vendor!r}; vendors found: "
                         f"{', '.join(vendors) or 'none'}")
    test = [s.subject_id for s in subjects if s.vendor == vendor]
    return split_patients([s.subject_id for s in subjects], split="official", seed=seed, official_test=test)


def convert_mnms(root: str | os.PathLike, dataset_id: int, split: str = "7:1:2", seed: int = 0,
                 split_file: str | os.PathLike | None = None, info: str | os.PathLike | None = None,
                 dataset_name: str = "MnMs", raw_root: str | os.PathLike | None = None, overwrite: bool = False,
                 n4: bool = False) -> Path:
    """Convert an M&Ms-layout folder to ``<raw_root>/Dataset{id:03d}_{name}`` and return that path.

    ``split``: 'a:b:c' (seeded patient-level shuffle) or 'vendor:X' (vendor X = test); ``split_file``
    as for ACDC; ``info``: the information CSV (default: found under ``root``). Errors name the
    subject and the file; nothing is left in ``raw_root`` on failure."""
    raw_root, name = dataset_target(dataset_id, dataset_name, raw_root)
    subjects, notes = find_subjects(root, info)
    by_id = {s.subject_id: s for s in subjects}
    provenance = None
    if split_file is not None:
        sets, provenance = read_split_file(split_file, list(by_id))
        split, seed = "file", None
    elif split.startswith("vendor:"):
        sets = vendor_split(subjects, split[len("vendor:"):], seed)
    elif split == "official":
        raise ValueError("split='official' exists for ACDC only; give 'train:val:test' or 'vendor:X'")
    else:
        sets = split_patients(list(by_id), split=split, seed=seed)

    def convert(builder, sid, subset, record):
        record["mnms_source"] = notes
        _convert_subject(builder, by_id[sid], subset, record)

    counts = {v: sum(1 for s in subjects if s.vendor == v) for v in sorted({str(s.vendor) for s in subjects})}
    logger.info("M&Ms: %d subjects, per vendor %s", len(subjects), counts)
    return write_dataset(
        raw_root, name, sets, split, seed, Path(root), convert,
        {"description": "M&Ms-layout short-axis cine MRI converted by nnunetv2_glrp (labels in ACDC's numbering)",
         "channel_names": {"0": "cineMRI"}, "labels": MNMS_LABELS.dataset_labels()},
        overwrite=overwrite, n4=n4, n4_note="one per patient, fitted on the ED image, applied to all frames",
        split_file=provenance)


def vendor_counts(record: dict) -> dict[str, dict[str, int]]:
    """{set: {vendor: subjects}} of a converted M&Ms dataset's ``glrp_split.json`` record."""
    out: dict[str, dict[str, int]] = {}
    for s in ("train", "val", "test"):
        out[s] = dict(sorted(Counter(str(record["mnms"][p]["vendor"]) for p in record[s]).items()))
    return out
