"""Reader for the ACDC release layout (``training/patientXXX``, ``testing/patientXXX``).

Each patient folder holds ``Info.cfg`` (``ED: 1``, ``ES: 12``, ``NbFrame: 30``, ``Group``,
``Height``, ``Weight``), ``patientXXX_frameYY.nii.gz`` + ``_gt`` for ED and ES and, in full copies,
``patientXXX_4d.nii.gz``. ED, ES and NbFrame are required integers (1 <= ED, ES <= NbFrame,
ED != ES); a key given twice is an error, a UTF-8 byte-order mark is ignored; Group/Height/Weight
are kept as text when present. Folders not named ``patientNNN`` (lower case, exactly three digits; e.g. ``Patient003``,
``patient3``) are skipped
with one warning that lists them. The root may also be the ``database/`` parent of ``training/``
and ``testing/``.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.conversion.frames import cine_arrays
from nnunetv2_glrp.conversion.validation import (check_3d_image, check_labels, check_same_geometry,
                                                 read_image)

logger = logging.getLogger(__name__)

SUBSETS = ("training", "testing")
PATIENT_PATTERN = re.compile(r"^patient\d{3}$")
REQUIRED_INFO_KEYS = ("ED", "ES", "NbFrame")


@dataclass(frozen=True)
class AcdcPatient:
    """One patient folder of the release (paths only; nothing read yet)."""

    patient_id: str
    subset: str  # "training" | "testing"
    folder: Path
    ed: int
    es: int
    n_frames: int
    info: dict = field(default_factory=dict, compare=False)

    def frame_path(self, frame: int) -> Path:
        return self.folder / f"{self.patient_id}_frame{frame:02d}.nii.gz"

    def label_path(self, frame: int) -> Path:
        return self.folder / f"{self.patient_id}_frame{frame:02d}_gt.nii.gz"

    @property
    def cine_path(self) -> Path:
        return self.folder / f"{self.patient_id}_4d.nii.gz"


@dataclass
class LabeledFrame:
    """A validated ED or ES frame: image and label share geometry, labels in {0, 1, 2, 3}."""

    phase: str
    frame: int
    image: sitk.Image
    label: sitk.Image
    image_path: Path
    label_path: Path


def parse_info_cfg(path: Path, patient: str) -> dict:
    """Parse ``Info.cfg`` into a dict with int ED/ES/NbFrame; ValueError/FileNotFoundError when unusable."""
    if not path.is_file():
        raise FileNotFoundError(f"{patient}: Info.cfg missing: {path}")
    info: dict = {}
    lines: dict[str, int] = {}
    # utf-8-sig: an editor's byte-order mark must not hide the first key
    for number, line in enumerate(path.read_text(encoding="utf-8-sig", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep or not key.strip():
            raise ValueError(f"{patient}: Info.cfg line {number} is not 'Key: value': {line!r} ({path})")
        if key.strip() in lines:
            raise ValueError(f"{patient}: Info.cfg has {key.strip()!r} twice (lines {lines[key.strip()]} and "
                             f"{number}); which one is meant is unclear ({path})")
        lines[key.strip()] = number
        info[key.strip()] = value.strip()
    for key in REQUIRED_INFO_KEYS:
        if key not in info:
            raise ValueError(f"{patient}: Info.cfg has no {key!r} entry ({path})")
        try:
            info[key] = int(float(info[key])) if float(info[key]).is_integer() else None
        except ValueError:
            info[key] = None
        if info[key] is None:
            raise ValueError(f"{patient}: Info.cfg {key!r} is not an integer ({path})")
    if info["NbFrame"] < 1:
        raise ValueError(f"{patient}: Info.cfg NbFrame = {info['NbFrame']} must be >= 1 ({path})")
    for key in ("ED", "ES"):
        if not 1 <= info[key] <= info["NbFrame"]:
            raise ValueError(f"{patient}: Info.cfg {key} = {info[key]} outside 1..NbFrame={info['NbFrame']} ({path})")
    if info["ED"] == info["ES"]:
        raise ValueError(f"{patient}: Info.cfg ED and ES are the same frame ({info['ED']}); they must differ ({path})")
    return info


def find_patients(acdc_root: str | Path) -> list[AcdcPatient]:
    """All patient folders under ``training/`` and ``testing/`` of the root, sorted by id."""
    root = Path(acdc_root)
    if not root.is_dir():
        raise FileNotFoundError(f"ACDC root folder not found: {root}")
    if not any((root / s).is_dir() for s in SUBSETS) and (root / "database").is_dir():
        root = root / "database"
    patients, skipped = [], []
    for subset in SUBSETS:
        folder = root / subset
        if not folder.is_dir():
            continue
        folders = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        skipped += [f"{subset}/{p.name}" for p in folders if not PATIENT_PATTERN.match(p.name)]
        for pdir in (p for p in folders if PATIENT_PATTERN.match(p.name)):
            info = parse_info_cfg(pdir / "Info.cfg", pdir.name)
            patients.append(AcdcPatient(pdir.name, subset, pdir, info["ED"], info["ES"], info["NbFrame"], info))
    if skipped:
        message = (f"skipped {len(skipped)} folder(s) not named patientNNN (lower case, three digits) under {root}: "
                   f"{', '.join(skipped)}")
        logger.warning(message)
    if not patients:
        raise FileNotFoundError(f"no patientXXX folders under {root}/training or {root}/testing")
    ids = [p.patient_id for p in patients]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"patients present in both training/ and testing/: {', '.join(duplicates)}")
    return sorted(patients, key=lambda p: p.patient_id)


def read_labeled_frame(patient: AcdcPatient, phase: str) -> LabeledFrame:
    """Read and validate the ED or ES image and label of a patient."""
    frame = patient.ed if phase == "ED" else patient.es
    image_path, label_path = patient.frame_path(frame), patient.label_path(frame)
    image = read_image(image_path, patient.patient_id, f"{phase} image")
    label = read_image(label_path, patient.patient_id, f"{phase} label")
    check_3d_image(image, patient.patient_id, image_path)
    label_array = check_labels(label, patient.patient_id, label_path)
    check_same_geometry(image, label, patient.patient_id, image_path, label_path)
    clean_label = sitk.GetImageFromArray(label_array)
    clean_label.CopyInformation(image)  # labels as uint8 on exactly the image grid
    return LabeledFrame(phase, frame, image, clean_label, image_path, label_path)


def read_cine_frames(patient: AcdcPatient, reference: sitk.Image) -> list[np.ndarray] | None:
    """All frames [Z, Y, X] of the 4D cine, or None when the file is missing.

    The 3D grid of the cine must have the reference (ED) image's size; the frames later get the
    reference geometry. ValueError on a non-4D file or a size mismatch (``frames.cine_arrays``)."""
    if not patient.cine_path.is_file():
        return None
    return cine_arrays(patient.cine_path, reference, patient.patient_id, reference_name="the ED image")
