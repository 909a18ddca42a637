"""The ACDC-layout phantom rewritten in the layouts of ``convert-folder`` and ``convert-mnms``.

The patients are the ACDC phantom's (:func:`nnunetv2_glrp.conversion.phantom.make_phantom`, same
seed, same images), written again:

- ``folder``: the private-hospital case, LV + MYO labeled only (the RV stays in the image, its label
  is background). ``<pid>/<pid>_cine.nii.gz`` (4D), ``<pid>/<pid>_frameNN.nii.gz`` and
  ``<pid>/<pid>_frameNN_gt.nii.gz`` (3D, ED and ES; labels 1 LV, 2 MYO) and ``cases.csv``
  (``patient,frame,image,label,cine``). Slice order as the ACDC phantom (one patient in five
  apex-first). Convert with ``--labels background=0,LV=1,MYO=2`` and either
  ``--pattern "{patient}/{patient}_frame{frame}.nii.gz" --cine_pattern "{patient}/{patient}_cine.nii.gz"``
  or ``--table cases.csv``.
- ``mnms``: subject ``M<NNN>``; vendors A, B, C, D in turn (centre = vendor's index + 1); vendors A-C
  stored apex-first, D base-first (as in the real M&Ms samples). Official layout: ``Training/Labeled/``
  (ACDC phantom training patients) and ``Testing/`` (the others), ``<id>/<id>_sa.nii.gz`` (4D) and
  ``<id>/<id>_sa_gt.nii.gz`` (4D, labels 1 LV, 2 MYO, 3 RV at ED and ES only), ``mnms_info.csv``
  (``External code,VendorName,Vendor,Centre,ED,ES``, ED/ES 0-based). ``variant="3d"``: flat
  ``<id>_sa_ED.nii.gz``, ``<id>_sa_ED_gt.nii.gz``, ES alike, and ``results.csv`` (``Name,ED/ES,Vendor,Centre``).
  ``variant="mnms2"`` (the M&Ms-2 release's layout): subject ``<NNN>``, ``<NNN>/<NNN>_SA_ED.nii.gz`` and
  ``_SA_ED_gt`` (float64, as the public sample stores them), ES alike, the 4D ``<NNN>/<NNN>_SA_CINE.nii.gz``
  (int16), long-axis ``<NNN>_LA_ED.nii.gz`` + ``_LA_ED_gt`` files that the converter must ignore, and
  ``dataSet_info.csv`` (``SUBJECT_CODE,DISEASE,VENDOR,SCANNER,FIELD``, codes without zero padding, no ED/ES:
  the converter finds them in the cine).

``phantom.json`` records the seed, the layout and every patient (``apex_first`` = as stored here).
"""

from __future__ import annotations

import csv
import json
import os
import tempfile
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.atomic_files import replacing_folder
from nnunetv2_glrp.conversion.phantom import PhantomPatient, make_phantom

VENDORS = ("A", "B", "C", "D")
VENDOR_NAMES = {"A": "Siemens", "B": "Philips", "C": "GE", "D": "Canon"}
ACDC_TO_FOLDER = np.array([0, 0, 2, 1], dtype=np.uint8)  # ACDC RV 1, MYO 2, LV 3 -> LV 1, MYO 2, RV dropped
ACDC_TO_MNMS = np.array([0, 3, 2, 1], dtype=np.uint8)  # -> M&Ms LV 1, MYO 2, RV 3


def _read(path: Path) -> tuple[np.ndarray, sitk.Image]:
    image = sitk.ReadImage(os.fspath(path))
    return sitk.GetArrayFromImage(image), image


def _write(array: np.ndarray, like: sitk.Image, path: Path) -> None:
    image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=False)
    image.CopyInformation(like)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, os.fspath(path), useCompression=True)


def _acdc_files(acdc: Path, meta: PhantomPatient) -> tuple[np.ndarray, sitk.Image, dict, sitk.Image]:
    """(4D cine [T, Z, Y, X], its image, {frame: label array [Z, Y, X]}, a 3D frame image) as stored."""
    folder = acdc / meta.subset / meta.patient_id
    cine, cine_image = _read(folder / f"{meta.patient_id}_4d.nii.gz")
    labels = {}
    for frame in (meta.ed_frame, meta.es_frame):
        labels[frame], frame_image = _read(folder / f"{meta.patient_id}_frame{frame:02d}_gt.nii.gz")
    return cine, cine_image, labels, frame_image


def _record(out: Path, layout: str, seed: int, patients: list[PhantomPatient], extra: dict | None = None) -> None:
    data = {"layout": layout, "seed": seed, "patients": [asdict(p) for p in patients], **(extra or {})}
    (out / "phantom.json").write_text(json.dumps(data, indent=1), encoding="utf-8")


def _with_acdc_phantom(out_dir, overwrite: bool, n_patients: int, seed: int, n_frames: int, first_patient: int,
                       difficulty: str, write) -> list[PhantomPatient]:
    with replacing_folder(out_dir, overwrite=overwrite) as out, tempfile.TemporaryDirectory(dir=out) as tmp:
        acdc = Path(tmp) / "acdc"
        metas = make_phantom(acdc, n_patients=n_patients, seed=seed, n_frames=n_frames,
                             first_patient=first_patient, difficulty=difficulty)
        return write(out, acdc, metas)


def make_folder_phantom(out_dir: str | os.PathLike, n_patients: int = 20, seed: int = 0, n_frames: int = 8,
                        first_patient: int = 1, difficulty: str = "easy", overwrite: bool = False) -> list[PhantomPatient]:
    """Write the phantom in the ``folder`` layout (LV + MYO only); see the module docstring."""

    def write(out: Path, acdc: Path, metas: list[PhantomPatient]) -> list[PhantomPatient]:
        rows = []
        for meta in metas:
            pid = meta.patient_id
            cine, cine_image, labels, frame_image = _acdc_files(acdc, meta)
            _write(cine, cine_image, out / pid / f"{pid}_cine.nii.gz")
            for frame, label in labels.items():
                stem = f"{pid}/{pid}_frame{frame:02d}"
                _write(cine[frame - 1], frame_image, out / f"{stem}.nii.gz")
                _write(ACDC_TO_FOLDER[label], frame_image, out / f"{stem}_gt.nii.gz")
                rows.append([pid, frame, f"{stem}.nii.gz", f"{stem}_gt.nii.gz", f"{pid}/{pid}_cine.nii.gz"])
        with open(out / "cases.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([["patient", "frame", "image", "label", "cine"], *rows])
        _record(out, "folder", seed, metas, {"labels": {"background": 0, "LV": 1, "MYO": 2}})
        return metas

    return _with_acdc_phantom(out_dir, overwrite, n_patients, seed, n_frames, first_patient, difficulty, write)


def make_mnms_phantom(out_dir: str | os.PathLike, n_patients: int = 20, seed: int = 0, n_frames: int = 8,
                      first_patient: int = 1, difficulty: str = "easy", overwrite: bool = False,
                      variant: str = "4d") -> list[PhantomPatient]:
    """Write the phantom in the M&Ms layout (``variant`` "4d": official, "3d": ED/ES files, "mnms2": M&Ms-2's ED/ES
    files + cine); see the module docstring."""
    if variant not in ("4d", "3d", "mnms2"):
        raise ValueError(f"variant must be '4d', '3d' or 'mnms2', got {variant!r}")

    def write(out: Path, acdc: Path, metas: list[PhantomPatient]) -> list[PhantomPatient]:
        written, rows = [], []
        for i, meta in enumerate(metas):
            vendor = VENDORS[i % len(VENDORS)]
            number = int(meta.patient_id[len('patient'):])
            sid = f"{number:03d}" if variant == "mnms2" else f"M{number:03d}"
            cine, cine_image, labels, frame_image = _acdc_files(acdc, meta)
            apex_first = vendor != "D"
            if meta.apex_first != apex_first:  # store the vendor's order
                cine, labels = cine[:, ::-1], {f: a[::-1] for f, a in labels.items()}
            ed, es = meta.ed_frame - 1, meta.es_frame - 1
            if variant == "4d":
                folder = out / ("Training/Labeled" if meta.subset == "training" else "Testing") / sid
                gt = np.zeros(cine.shape, dtype=np.uint8)
                for frame, label in labels.items():
                    gt[frame - 1] = ACDC_TO_MNMS[label]
                _write(cine, cine_image, folder / f"{sid}_sa.nii.gz")
                _write(gt, cine_image, folder / f"{sid}_sa_gt.nii.gz")
                rows.append([sid, VENDOR_NAMES[vendor], vendor, VENDORS.index(vendor) + 1, ed, es])
            elif variant == "mnms2":
                folder = out / sid
                _write(cine.astype(np.int16), cine_image, folder / f"{sid}_SA_CINE.nii.gz")
                for phase, frame in (("ED", meta.ed_frame), ("ES", meta.es_frame)):
                    _write(cine[frame - 1].astype(np.float64), frame_image, folder / f"{sid}_SA_{phase}.nii.gz")
                    _write(ACDC_TO_MNMS[labels[frame]].astype(np.float64), frame_image,
                           folder / f"{sid}_SA_{phase}_gt.nii.gz")
                decoy = cine[meta.ed_frame - 1, :, cine.shape[2] // 2][None]  # a long-axis stand-in: 1 x Z x X
                for suffix, array in (("", decoy), ("_gt", np.ones_like(decoy, dtype=np.float64))):
                    sitk.WriteImage(sitk.GetImageFromArray(array), os.fspath(folder / f"{sid}_LA_ED{suffix}.nii.gz"))
                rows.append([number, "NOR", VENDOR_NAMES[vendor], f"{VENDOR_NAMES[vendor]} scanner", 1.5])
            else:
                prefix = "better_" if i % 2 == 0 else "worse_"
                for phase, frame in (("ED", meta.ed_frame), ("ES", meta.es_frame)):
                    _write(cine[frame - 1], frame_image, out / f"{prefix}{sid}_sa_{phase}.nii.gz")
                    _write(ACDC_TO_MNMS[labels[frame]], frame_image, out / f"{prefix}{sid}_sa_{phase}_gt.nii.gz")
                    rows.append([f"{sid}_sa_{phase}_gt", phase, vendor, VENDORS.index(vendor) + 1])
            written.append(replace(meta, patient_id=sid, apex_first=apex_first))
        header, name = {"4d": (["External code", "VendorName", "Vendor", "Centre", "ED", "ES"], "mnms_info.csv"),
                        "3d": (["Name", "ED/ES", "Vendor", "Centre"], "results.csv"),
                        "mnms2": (["SUBJECT_CODE", "DISEASE", "VENDOR", "SCANNER", "FIELD"], "dataSet_info.csv"),
                        }[variant]
        with open(out / name, "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle).writerows([header, *rows])
        _record(out, f"mnms-{variant}", seed, written,
                {"vendors": {p.patient_id: VENDOR_NAMES[VENDORS[i % len(VENDORS)]] if variant == "mnms2"
                             else VENDORS[i % len(VENDORS)] for i, p in enumerate(written)}})
        return written

    return _with_acdc_phantom(out_dir, overwrite, n_patients, seed, n_frames, first_patient, difficulty, write)
