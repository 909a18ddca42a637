"""The synthetic cine phantom (``phantom.py``'s anatomy) written in the Sunnybrook Cardiac Data layout.

What :mod:`nnunetv2_glrp.conversion.sunnybrook_reader` reads: ``dicoms/<patient>/<instance>.dcm``
(one 2D DICOM per slice and frame, written by SimpleITK with instance number, trigger time, slice
location, image position/orientation and pixel spacing), ``contourfiles/<folder>/i-contours/`` and
``o-contours/`` (``IM-0001-NNNN-icontour-manual.txt``, "x y" per line, x the column and y the row,
pixel centres at integers) and ``link.csv``. Patient ``N`` is ``SCD{N:05d}01`` with contour folder
``SC-PH-{N}``. Like the studied Sunnybrook data: endocardial contours at ED and ES, epicardial at ED
only, on every slice that has LV; instance numbers run slice after slice (frames within a slice by
trigger time, each slice its own RR interval), and in odd patients against the slice normal.

What the phantom adds to make the reader checkable: the in-plane spacing differs between x and y
(y = 1.08 x) and every image has n // 8 more columns than rows (reflected background), so a swapped
axis shows; the orientation is a random rotation and the position a random offset; ED is frame 1
in odd patients and frame ``n_frames - 1`` in even ones (frames rolled, the cycle unchanged);
``apex_first`` patients (one in five, as in ``phantom.py``) have their apex at the low end of the
slice normal. ``truth/<patient>_ED.nii.gz`` / ``_ES.nii.gz`` hold the phantom's own label maps as the
converter should read them before orientation (LV 1, MYO 2 at ED; ES LV only; slices in ascending
position along the normal, geometry from the phantom's own numbers), and ``phantom.json`` the draws.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from skimage.measure import find_contours
from nnunetv2_glrp.progress import tqdm

from nnunetv2_glrp.atomic_files import replacing_folder
from nnunetv2_glrp.conversion.phantom import DIFFICULTIES, _draw_meta, _patient_volume_series

logger = logging.getLogger(__name__)

UID_ROOT = "2.25"  # UUID-derived UIDs (ISO/IEC 9834-8): no registered root needed


@dataclass(frozen=True)
class SunnybrookPhantomPatient:
    patient_id: str
    contour_id: str
    n_slices: int
    n_frames: int
    rows: int
    cols: int
    spacing: tuple[float, float, float]  # (x, y, z) mm
    ed_frame: int  # 1-based
    es_frame: int
    apex_first: bool  # apex at the low end of the slice normal
    instances_descending: bool  # instance numbers run against the slice normal
    origin: tuple[float, float, float]  # position of the slice lowest along the normal
    direction: tuple[float, ...]  # 3x3 row-major, columns = row direction, column direction, normal


def _rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 2] *= -1
    return q


def _contour_lines(mask: np.ndarray) -> str:
    """The outline of a mask as "x y" lines (marching squares at 0.5 through the padded mask, longest piece)."""
    pieces = find_contours(np.pad(mask, 1).astype(np.float32), 0.5)
    outline = max(pieces, key=len)[:-1] - 1.0  # (row, col); the closing point repeats the first
    return "".join(f"{c:.2f} {r:.2f}\n" for r, c in outline)


def _write_dicom(array: np.ndarray, path: Path, meta: SunnybrookPhantomPatient, position: np.ndarray,
                 tags: dict[str, str]) -> None:
    image = sitk.GetImageFromArray(array[np.newaxis])
    image.SetSpacing(meta.spacing)
    image.SetOrigin(tuple(float(v) for v in position))
    image.SetDirection(meta.direction)
    for key, value in tags.items():
        image.SetMetaData(key, value)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    writer.SetFileName(os.fspath(path))
    writer.Execute(image)


def _truth_image(array: np.ndarray, meta: SunnybrookPhantomPatient) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(meta.spacing)
    image.SetOrigin(meta.origin)
    image.SetDirection(meta.direction)
    return image


def write_sunnybrook_patient(out: Path, number: int, seed: int, n_frames: int,
                             difficulty: str) -> SunnybrookPhantomPatient:
    """Draw patient ``number`` with ``phantom.py``'s anatomy and write it in the Sunnybrook layout under ``out``."""
    base = _draw_meta(np.random.default_rng([seed, number]), number, "training", n_frames, seed, difficulty)
    sx = base.spacing[0]
    base = replace(base, spacing=(sx, round(1.08 * sx, 4), base.spacing[2]))
    images, labels = _patient_volume_series(np.random.default_rng([seed, number, 1]), base)  # [T, Z, Y, X]
    if base.apex_first:
        images, labels = images[:, ::-1], labels[:, ::-1]
    pad = base.in_plane_size // 8
    images = np.pad(images, ((0, 0), (0, 0), (0, 0), (0, pad)), mode="reflect")
    labels = np.pad(labels, ((0, 0), (0, 0), (0, 0), (0, pad)))
    ed = 1 if number % 2 else n_frames - 1
    images, labels = np.roll(images, ed - 1, axis=0), np.roll(labels, ed - 1, axis=0)
    es = (base.es_frame - 1 + ed - 1) % n_frames + 1
    rng = np.random.default_rng([seed, number, 7])
    rotation = _rotation(rng)
    T, m, rows, cols = images.shape
    centre = rng.uniform(-60.0, 60.0, size=3)
    origin = centre - (cols - 1) / 2 * sx * rotation[:, 0] - (rows - 1) / 2 * base.spacing[1] * rotation[:, 1]
    meta = SunnybrookPhantomPatient(
        patient_id=f"SCD{number:05d}01", contour_id=f"SC-PH-{number}", n_slices=m, n_frames=T, rows=rows, cols=cols,
        spacing=base.spacing, ed_frame=ed, es_frame=es, apex_first=base.apex_first,
        instances_descending=number % 2 == 1, origin=tuple(float(v) for v in origin),
        direction=tuple(float(v) for v in rotation.ravel()))
    dicom_dir, contour_dir = out / "dicoms" / meta.patient_id, out / "contourfiles" / meta.contour_id
    for sub in (dicom_dir, contour_dir / "i-contours", contour_dir / "o-contours", out / "truth"):
        sub.mkdir(parents=True, exist_ok=True)
    study, series = (f"{UID_ROOT}.{seed + 1}{number:06d}{k}" for k in (1, 2))
    truth = {f: np.zeros((m, rows, cols), dtype=np.uint8) for f in (ed, es)}
    for k in range(m):
        block = m - 1 - k if meta.instances_descending else k
        position = origin + k * base.spacing[2] * rotation[:, 2]
        rr = rng.uniform(700.0, 1000.0)
        for f in range(T):
            instance = block * T + f + 1
            tags = {"0008|0060": "MR", "0008|0008": "ORIGINAL\\PRIMARY", "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
                    "0008|0018": f"{series}.{instance}", "0010|0010": meta.patient_id, "0010|0020": meta.patient_id,
                    "0020|000d": study, "0020|000e": series, "0020|0011": "300", "0020|0013": str(instance),
                    "0018|1060": f"{(f + 0.5) * rr / T:.2f}", "0020|1041": f"{float(position @ rotation[:, 2]):.3f}",
                    "0018|0050": f"{base.spacing[2]:g}", "0018|0088": f"{base.spacing[2]:g}"}
            _write_dicom(images[f, k], dicom_dir / f"{instance}.dcm", meta, position, tags)
            if f + 1 not in truth or not (labels[f, k] == 3).any():
                continue
            name = f"IM-0001-{instance:04d}"
            (contour_dir / "i-contours" / f"{name}-icontour-manual.txt").write_text(_contour_lines(labels[f, k] == 3))
            if f + 1 == ed:
                outer = np.isin(labels[f, k], (2, 3))
                (contour_dir / "o-contours" / f"{name}-ocontour-manual.txt").write_text(_contour_lines(outer))
                truth[ed][k][outer] = 2
            truth[f + 1][k][labels[f, k] == 3] = 1
    for phase, f in (("ED", ed), ("ES", es)):
        sitk.WriteImage(_truth_image(truth[f], meta), os.fspath(out / "truth" / f"{meta.patient_id}_{phase}.nii.gz"))
    return meta


def make_sunnybrook_phantom(out_dir: str | os.PathLike, n_patients: int = 20, seed: int = 0, n_frames: int = 8,
                            first_patient: int = 1, difficulty: str = "easy",
                            overwrite: bool = False) -> list[SunnybrookPhantomPatient]:
    """Write ``n_patients`` phantom patients in the Sunnybrook layout under ``out_dir``; return their metadata.

    Same contract as :func:`nnunetv2_glrp.conversion.phantom.make_phantom` (``out_dir`` absent or
    empty unless ``overwrite``; built in a temporary sibling that replaces it when complete)."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if n_frames < 3:
        raise ValueError(f"n_frames must be >= 3 (ED, ES and a diastolic frame), got {n_frames}")
    with replacing_folder(out_dir, overwrite=overwrite) as out:
        patients = [write_sunnybrook_patient(out, first_patient + i, seed, n_frames, difficulty)
                    for i in tqdm(range(n_patients), desc="phantom patients", unit="patient", disable=n_patients < 2)]
        lines = ["patient_id,original_id"] + [f"{p.patient_id},{p.contour_id}" for p in patients]
        (out / "link.csv").write_text("\n".join(lines) + "\n")
        record = {"layout": "sunnybrook", "seed": seed, "n_frames": n_frames, "first_patient": first_patient,
                  "difficulty": difficulty, "patients": [asdict(p) for p in patients]}
        (out / "phantom.json").write_text(json.dumps(record, indent=1))
    logger.info("Sunnybrook-layout phantom: %d patients (seed %d) written to %s", n_patients, seed, out_dir)
    return patients
