"""Reader for the Sunnybrook Cardiac Data layout: 2D cine DICOM files plus manual contour text files.

Layout (the one of the public copy ``final_data/`` studied for this reader)::

    ROOT/dicoms/<patient>/**/*.dcm        one 2D image per (slice, phase); file names are free
    ROOT/contourfiles/<folder>/**/IM-0001-NNNN-icontour-manual.txt   endocardium (LV cavity)
    ROOT/contourfiles/<folder>/**/IM-0001-NNNN-ocontour-manual.txt   epicardium
    ROOT/link.csv                          optional: ``patient_id,original_id`` (DICOM folder, contour folder)

Without ``link.csv`` the contour folder has the DICOM folder's name (as in the original release).
NNNN is the instance number (0020|0013) of the contoured image, whatever the DICOM file is called; the
contour folder is searched recursively. ``p1``/``p2contour`` files (papillary muscles) are ignored:
as in ACDC, the LV label is the whole cavity inside the endocardium.

Slice grid: images are grouped into slices by their position (0020|0032) along the slice normal
(row x column direction of 0020|0037; 0020|1041 "slice location" is not used: on the studied scans
its steps are not the slice distance), and ordered within a slice by trigger time (0018|1060;
instance number on ties or when absent): the rank is the cine frame (1-based). Every slice needs the
same number of images, size, pixel spacing and orientation, positions on one line along the normal
and gaps equal within 5 %, else the error says what differs. Stacks ascend along the normal
(direction [row, column, normal], spacing z = the median gap); the converter flips them base-first.

Contours: lines of "x y" pixel coordinates, x the column and y the row, pixel centres at integers
(0-based, as the public copy's own code reads them; docs/conversion.md: a possible ~0.75 px offset),
filled with ``skimage.draw.polygon`` (pixel centres inside or on it); a point outside the image's
pixel area (-0.5 .. size - 0.5) is an error. Label per contoured slice: LV (1) inside the icontour, MYO (2)
inside the ocontour but not the icontour; a slice with only an icontour is LV only.

ED and ES: exactly two frames must carry contours, each with icontours. ED is the frame with
epicardial contours when only one has them (Sunnybrook draws ocontours at ED only), else the frame
with the larger mean LV cavity over the slices contoured in both; a disagreement of the two rules is
a warning. On the studied data the ES label is therefore LV-only (its myocardium is background).

Partial labels: slices of the ED/ES frame without a contour are stored as background (no guess);
which slices carry contours is returned per frame (the converter records it per case).
"""

from __future__ import annotations

import csv
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from skimage.draw import polygon

logger = logging.getLogger(__name__)

DICOM_DIR, CONTOUR_DIR, LINK_FILE = "dicoms", "contourfiles", "link.csv"
CONTOUR_PATTERN = re.compile(r"^IM-\d+-(\d+)-([io])contour-manual\.txt$")
LV, MYO = 1, 2
REQUIRED_TAGS = {"0020|0013": "instance number", "0020|0032": "image position", "0020|0037": "image orientation",
                 "0028|0030": "pixel spacing"}
GAP_TOLERANCE = 0.05  # relative spread of the slice gaps accepted


@dataclass(frozen=True)
class SunnybrookPatient:
    patient_id: str
    dicom_folder: Path
    contour_folder: Path


@dataclass
class CineGrid:
    """A patient's cine: one 3D image per frame (ascending along the normal) and where each instance sits."""

    frames: list[sitk.Image]
    cell_of_instance: dict[int, tuple[int, int]]  # instance number -> (frame index 0-based, slice index)


@dataclass
class ContouredFrame:
    phase: str
    frame: int  # 1-based
    label: np.ndarray  # [Z, Y, X] uint8
    contoured_slices: list[int]  # slice indices (reader's order) that carry a contour


def find_patients(root: str | Path) -> list[SunnybrookPatient]:
    """Every DICOM folder of ``root/dicoms`` paired with its contour folder, sorted by patient id."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"Sunnybrook root folder not found: {root}")
    dicoms, contours = root / DICOM_DIR, root / CONTOUR_DIR
    if not dicoms.is_dir() or not contours.is_dir():
        raise FileNotFoundError(f"{root} is not in the Sunnybrook layout: expected {DICOM_DIR}/<patient>/*.dcm and "
                                f"{CONTOUR_DIR}/<patient or link.csv name>/**/*contour-manual.txt under it")
    folders = sorted(p for p in dicoms.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise FileNotFoundError(f"no patient folders under {dicoms}")
    link = _read_link(root / LINK_FILE) if (root / LINK_FILE).is_file() else None
    if link is not None:
        missing = sorted(set(link) - {p.name for p in folders})
        if missing:
            raise FileNotFoundError(f"{LINK_FILE} lists {', '.join(missing)} but {dicoms} has no such folder")
    patients = []
    for folder in folders:
        if link is not None and folder.name not in link:
            raise ValueError(f"{folder.name}: not listed in {root / LINK_FILE}, so its contour folder is unknown")
        contour_folder = contours / (link[folder.name] if link is not None else folder.name)
        if not contour_folder.is_dir():
            raise FileNotFoundError(f"{folder.name}: contour folder missing: {contour_folder}")
        patients.append(SunnybrookPatient(folder.name, folder, contour_folder))
    unused = sorted({p.name for p in contours.iterdir() if p.is_dir()} - {p.contour_folder.name for p in patients})
    if unused:
        message = f"contour folders without DICOM folder skipped: {', '.join(unused)}"
        logger.warning(message)
    return patients


def _read_link(path: Path) -> dict[str, str]:
    with path.open(newline="", encoding="utf-8-sig") as f:
        rows = [r for r in csv.reader(f) if any(c.strip() for c in r)]
    if not rows or [c.strip() for c in rows[0]] != ["patient_id", "original_id"]:
        raise ValueError(f"{path}: the first line must be 'patient_id,original_id'")
    link: dict[str, str] = {}
    for number, row in enumerate(rows[1:], start=2):
        if len(row) != 2 or not all(c.strip() for c in row):
            raise ValueError(f"{path}: line {number} is not 'patient_id,original_id': {','.join(row)!r}")
        if row[0].strip() in link:
            raise ValueError(f"{path}: patient {row[0].strip()} is listed twice")
        link[row[0].strip()] = row[1].strip()
    return link


def _tag(image: sitk.Image, key: str) -> str | None:
    return image.GetMetaData(key).strip() if image.HasMetaDataKey(key) and image.GetMetaData(key).strip() else None


def _number(text: str, pid: str, path: Path, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{pid}: {path.name}: {what} {text!r} is not a number") from None


def read_cine(patient: SunnybrookPatient) -> CineGrid:
    """Read every DICOM of the patient and stack them into one 3D image per cine frame."""
    pid = patient.patient_id
    paths = sorted(p for p in patient.dicom_folder.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
    if not paths:
        raise FileNotFoundError(f"{pid}: no DICOM (.dcm) file under {patient.dicom_folder}")
    images, instance, trigger, files = [], [], [], {}
    for path in paths:
        try:
            image = sitk.ReadImage(str(path))
        except RuntimeError as exc:
            raise ValueError(f"{pid}: cannot read DICOM file {path}: {str(exc).strip().splitlines()[-1]}") from None
        for key, what in REQUIRED_TAGS.items():
            if _tag(image, key) is None:
                raise ValueError(f"{pid}: {path.name} has no {what} ({key})")
        if image.GetDimension() != 3 or image.GetSize()[2] != 1 or image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"{pid}: {path.name} is not a single-frame grey-level 2D image (size {image.GetSize()})")
        number = int(_number(_tag(image, "0020|0013"), pid, path, "instance number"))
        if number in files:
            raise ValueError(f"{pid}: {files[number].name} and {path.name} have the same instance number {number}")
        files[number], t = path, _tag(image, "0018|1060")
        images.append(image)
        instance.append(number)
        trigger.append(_number(t, pid, path, "trigger time") if t is not None else np.nan)
    ref = images[0]
    normal = np.array(ref.GetDirection()).reshape(3, 3)[:, 2]
    for image, path in zip(images, paths):
        problem = ("size" if image.GetSize() != ref.GetSize() else
                   "pixel spacing" if not np.allclose(image.GetSpacing()[:2], ref.GetSpacing()[:2], rtol=1e-4) else
                   "orientation" if not np.allclose(image.GetDirection(), ref.GetDirection(), atol=1e-3) else None)
        if problem:
            raise ValueError(f"{pid}: inconsistent slice grid: {path.name} differs from {paths[0].name} in {problem}")
    position = np.array([image.GetOrigin() for image in images])
    along = (position - position[0]) @ normal
    order = np.argsort(along, kind="stable")
    breaks = np.flatnonzero(np.diff(along[order]) > 0.5) + 1  # a new slice > 0.5 mm further along the normal
    slices = np.split(order, breaks)
    counts = [len(s) for s in slices]
    if len(slices) < 2:
        raise ValueError(f"{pid}: all {len(images)} images lie at one position along the slice normal; "
                         "a short-axis stack needs at least two slices")
    if len(set(counts)) != 1:
        raise ValueError(f"{pid}: inconsistent slice grid: images per slice position {counts} (ascending along the "
                         f"normal); every slice needs one image per cine frame")
    centres = np.array([along[s].mean() for s in slices])
    gaps = np.diff(centres)
    gap = float(np.median(gaps))
    offsets = [np.linalg.norm(position[i] - position[0] - along[i] * normal) for i in range(len(images))]
    if np.abs(gaps - gap).max() > GAP_TOLERANCE * gap or max(offsets) > 0.5 * min(ref.GetSpacing()[:2]):
        raise ValueError(f"{pid}: inconsistent slice grid: slice gaps {np.round(gaps, 2).tolist()} mm (tolerance "
                         f"{GAP_TOLERANCE:.0%}), largest in-plane offset {max(offsets):.2f} mm")
    grid = [sorted(s.tolist(), key=lambda i: (0.0 if np.isnan(trigger[i]) else trigger[i], instance[i]))
            for s in slices]  # [slice][frame] -> image index
    frames = []
    for f in range(counts[0]):
        volume = sitk.GetImageFromArray(np.stack([sitk.GetArrayFromImage(images[row[f]])[0] for row in grid]))
        volume.SetSpacing((*ref.GetSpacing()[:2], gap))
        volume.SetOrigin(images[grid[0][0]].GetOrigin())
        volume.SetDirection(ref.GetDirection())
        frames.append(volume)
    return CineGrid(frames, {instance[i]: (f, z) for z, row in enumerate(grid) for f, i in enumerate(row)})


def read_contour(path: Path, pid: str, shape: tuple[int, int]) -> np.ndarray:
    """Points [N, 2] (x, y) of a contour file, checked against an image of ``shape`` (rows, columns)."""
    points = []
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            xy = [float(v) for v in line.split()]
        except ValueError:
            xy = []
        if len(xy) != 2 or not np.isfinite(xy).all():
            raise ValueError(f"{pid}: {path.name} line {number} is not 'x y' (two numbers): {line.strip()!r}")
        x, y = xy
        if not (-0.5 <= x <= shape[1] - 0.5 and -0.5 <= y <= shape[0] - 0.5):
            raise ValueError(f"{pid}: {path.name} line {number}: contour point ({x:g}, {y:g}) lies outside the "
                             f"{shape[1]} x {shape[0]} image (x -0.5..{shape[1] - 0.5:g}, y -0.5..{shape[0] - 0.5:g})")
        points.append(xy)
    if len(points) < 3:
        raise ValueError(f"{pid}: {path.name} has {len(points)} point(s); a contour needs at least 3")
    return np.array(points)


def fill_contour(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Boolean mask [rows, columns] of the pixels whose centre lies inside (or on) the polygon of (x, y) points."""
    mask = np.zeros(shape, dtype=bool)
    rows, cols = polygon(points[:, 1], points[:, 0], shape)
    mask[rows, cols] = True
    return mask


def _contour_files(patient: SunnybrookPatient, grid: CineGrid) -> dict[tuple[int, int], dict[str, Path]]:
    """(frame index, slice) -> {"i"|"o": contour file} of the patient's manual contours."""
    found: dict[tuple[int, int], dict[str, Path]] = {}
    for path in sorted(patient.contour_folder.rglob("*contour-manual.txt")):
        match = CONTOUR_PATTERN.match(path.name)
        if match is None:
            continue
        number, kind = int(match.group(1)), match.group(2)
        if number not in grid.cell_of_instance:
            raise ValueError(f"{patient.patient_id}: contour file {path} refers to image {number}, but no DICOM of "
                             f"{patient.patient_id} has instance number {number}")
        cell = found.setdefault(grid.cell_of_instance[number], {})
        if kind in cell:
            raise ValueError(f"{patient.patient_id}: two {kind}contour files for image {number}: {cell[kind]}, {path}")
        cell[kind] = path
    return found


def _slice_label(files: dict[str, Path], pid: str, shape: tuple[int, int]) -> np.ndarray:
    """Label map [rows, columns] of one contoured image: LV inside the icontour, MYO inside the ocontour only."""
    masks = {kind: fill_contour(read_contour(path, pid, shape), shape) for kind, path in files.items()}
    for kind, mask in masks.items():
        if not mask.any():
            raise ValueError(f"{pid}: {files[kind].name} encloses no pixel centre")
    if len(masks) == 2 and masks["o"].sum() <= masks["i"].sum():
        raise ValueError(f"{pid}: {files['o'].name} encloses no more pixels than {files['i'].name} "
                         "(epicardium inside the endocardium: files swapped?)")
    label = np.zeros(shape, dtype=np.uint8)
    for kind, value in (("o", MYO), ("i", LV)):  # the cavity overrides the epicardial disk
        if kind in masks:
            label[masks[kind]] = value
    return label


def read_labeled_frames(patient: SunnybrookPatient, grid: CineGrid) -> tuple[ContouredFrame, ContouredFrame, str]:
    """(ED, ES, evidence of the ED rule): the label maps filled from the patient's contour files."""
    pid = patient.patient_id
    n_slices, rows, cols = sitk.GetArrayViewFromImage(grid.frames[0]).shape
    found = _contour_files(patient, grid)
    frames = sorted({f for f, _ in found})
    if len(frames) != 2:
        detail = ", ".join(f"frame {f + 1}: {sum(1 for c in found if c[0] == f)} slice(s)" for f in frames)
        raise ValueError(f"{pid}: contours on {len(frames)} cine frame(s) under {patient.contour_folder}"
                         f"{' (' + detail + ')' if detail else ''}; expected exactly two, ED and ES")
    labels = {f: np.zeros((n_slices, rows, cols), dtype=np.uint8) for f in frames}
    for (f, z), files in found.items():
        labels[f][z] = _slice_label(files, pid, (rows, cols))
    areas = {(f, z): int((labels[f][z] == LV).sum()) for (f, z), files in found.items() if "i" in files}
    for f in frames:
        if not any(g == f for g, _ in areas):
            raise ValueError(f"{pid}: frame {f + 1} has epicardial but no endocardial contours; ED and ES both "
                             "need icontour files")
    with_o = sorted({f for (f, _), files in found.items() if "o" in files})
    common = {z for f, z in areas if (frames[0], z) in areas and (frames[1], z) in areas}
    cavity = {f: np.mean([a for (g, z), a in areas.items() if g == f and (z in common or not common)]) for f in frames}
    larger = max(frames, key=lambda f: cavity[f])
    if len(with_o) == 1:
        ed, rule = with_o[0], f"frame {with_o[0] + 1} is the only one with epicardial contours"
        if larger != ed:
            message = (f"{pid}: frame {ed + 1} has the epicardial contours but the smaller LV cavity "
                       f"({cavity[ed]:.0f} vs {cavity[larger]:.0f} pixels per slice); taking it as ED")
            logger.warning(message)
            rule += "; its LV cavity is the smaller one"
    else:
        ed, rule = larger, (f"{'both frames have' if with_o else 'no frame has'} epicardial contours: ED is frame "
                            f"{larger + 1}, the larger mean LV cavity")
    es = frames[1] if ed == frames[0] else frames[0]
    rule += f" (mean cavity pixels per slice: ED {cavity[ed]:.0f}, ES {cavity[es]:.0f})"
    return tuple(ContouredFrame(phase, f + 1, labels[f], sorted(z for g, z in found if g == f))
                 for phase, f in (("ED", ed), ("ES", es))) + (rule,)
