"""Reader of a user's own short-axis cine folder: which files are the labeled frames of which patient.

Two ways to list them (paths relative to the root folder, ``/`` as separator):

- ``pattern``: a path pattern of the labeled images with the fields ``{patient}`` (no ``/``) and
  ``{frame}`` (digits, the 1-based cine frame) and/or ``{phase}`` (ED or ES), e.g.
  ``{patient}/{patient}_frame{frame}.nii.gz``; a field may repeat. ``label_pattern`` gives the label
  of each image with the same fields (default: the image pattern with ``_gt`` before ``.nii.gz``),
  ``cine_pattern`` an optional 4D cine per patient with ``{patient}`` only.
- ``table``: a CSV with the header ``patient,frame,image,label`` and optional ``phase`` and ``cine``
  columns, one row per labeled frame. An image or label may be 4D; its frame ``frame`` (1-based) is
  taken, and a 4D image is also the patient's cine unless a ``cine`` column names another file. A
  row that names a missing file is an error (naming the line and the file).

Every patient needs exactly two labeled frames: ED and ES. Their phase is the ``{phase}`` field or
the ``phase`` column; without it the lower frame number is ED (the frame at the R wave, where most
cine acquisitions start) and the higher ES. Without frame numbers (``{phase}`` only, no cine) ED is
recorded as frame 1 and ES as frame 2.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field, replace
from pathlib import Path

PHASES = ("ED", "ES")
FIELDS = {"patient": r"[^/]+?", "frame": r"\d+", "phase": r"(?:ED|ES|ed|es)"}
TABLE_COLUMNS = ("patient", "frame", "image", "label")


@dataclass(frozen=True)
class ListedFrame:
    """One labeled frame as listed (nothing read yet)."""

    patient: str
    frame: int | None  # 1-based cine frame, None when unknown
    phase: str | None  # "ED" | "ES" | None (then decided from the frame numbers)
    image: Path
    label: Path
    where: str  # "cases.csv line 3" | "pattern match a/b.nii.gz"


@dataclass
class FolderPatient:
    patient_id: str
    frames: list[ListedFrame] = field(default_factory=list)  # [ED, ES] after :func:`assign_phases`
    cine: Path | None = None


def _pattern_regex(pattern: str, allowed: tuple[str, ...]) -> re.Pattern:
    parts, seen, pos = [], set(), 0
    for m in re.finditer(r"\{(\w+)\}", pattern):
        name = m.group(1)
        if name not in allowed:
            raise ValueError(f"pattern {pattern!r}: unknown field {{{name}}}; allowed: "
                             f"{', '.join('{' + a + '}' for a in allowed)}")
        parts.append(re.escape(pattern[pos:m.start()]))
        parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>{FIELDS[name]})")
        seen.add(name)
        pos = m.end()
    parts.append(re.escape(pattern[pos:]))
    return re.compile("".join(parts))


def _fill(pattern: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: values[m.group(1)] if m.group(1) in values else m.group(0), pattern)


def default_label_pattern(pattern: str) -> str:
    if not pattern.endswith(".nii.gz"):
        raise ValueError(f"pattern {pattern!r} does not end in .nii.gz; give --label_pattern")
    return pattern[: -len(".nii.gz")] + "_gt.nii.gz"


def patients_from_pattern(root: Path, pattern: str, label_pattern: str | None = None,
                          cine_pattern: str | None = None) -> dict[str, FolderPatient]:
    """{patient: FolderPatient} of the files under ``root`` matching ``pattern`` (see the module docstring)."""
    if "{patient}" not in pattern or not ("{frame}" in pattern or "{phase}" in pattern):
        raise ValueError(f"pattern {pattern!r} needs {{patient}} and {{frame}} and/or {{phase}}")
    label_pattern = label_pattern or default_label_pattern(pattern)
    regex = _pattern_regex(pattern, ("patient", "frame", "phase"))
    _pattern_regex(label_pattern, ("patient", "frame", "phase"))
    if cine_pattern is not None:
        _pattern_regex(cine_pattern, ("patient",))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    label_files = set()
    matches = []
    for rel in files:
        m = regex.fullmatch(rel)
        if m:
            values = {k: v for k, v in m.groupdict().items() if v is not None}
            matches.append((rel, values))
            label_files.add(_fill(label_pattern, values))
    patients: dict[str, FolderPatient] = {}
    for rel, values in matches:
        if rel in label_files:  # a label file that happens to match the image pattern
            continue
        pid = values["patient"]
        frame = int(values["frame"]) if "frame" in values else None
        phase = values["phase"].upper() if "phase" in values else None
        patient = patients.setdefault(pid, FolderPatient(pid))
        patient.frames.append(ListedFrame(pid, frame, phase, root / rel, root / _fill(label_pattern, values),
                                          f"pattern match {rel}"))
    if not patients:
        raise FileNotFoundError(f"no file under {root} matches the pattern {pattern!r}")
    if cine_pattern is not None:
        for pid, patient in patients.items():
            cine = root / _fill(cine_pattern, {"patient": pid})
            patient.cine = cine if cine.is_file() else None
    return patients


def patients_from_table(root: Path, table: Path) -> dict[str, FolderPatient]:
    """{patient: FolderPatient} of a CSV ``patient,frame,image,label[,phase][,cine]`` (paths relative to ``root``)."""
    if not table.is_file():
        raise FileNotFoundError(f"case table {table} not found")
    rows = list(csv.reader(io.StringIO(table.read_text(encoding="utf-8-sig"))))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    missing = [c for c in TABLE_COLUMNS if c not in header]
    if missing:
        raise ValueError(f"case table {table}: header {','.join(header)!r} lacks {', '.join(missing)} "
                         f"(expected patient,frame,image,label[,phase][,cine])")
    col = {name: header.index(name) for name in header}
    patients: dict[str, FolderPatient] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        where = f"{table.name} line {number}"
        if len(row) < len(header):
            raise ValueError(f"{where}: {len(row)} fields, the header has {len(header)}")
        value = {name: row[i].strip() for name, i in col.items()}
        pid = value["patient"]
        if not pid:
            raise ValueError(f"{where}: empty patient id")
        try:
            frame = int(value["frame"])
        except ValueError:
            raise ValueError(f"{where}: frame {value['frame']!r} is not an integer") from None
        if frame < 1:
            raise ValueError(f"{where}: frame {frame} must be >= 1 (frames are numbered from 1)")
        phase = value.get("phase", "").upper() or None
        if phase is not None and phase not in PHASES:
            raise ValueError(f"{where}: phase {value['phase']!r} is not ED or ES")
        paths = {}
        for name in ("image", "label", "cine"):
            if value.get(name):
                path = Path(value[name]) if Path(value[name]).is_absolute() else root / value[name]
                if not path.is_file():
                    raise FileNotFoundError(f"{where}: {pid}: {name} file missing: {path}")
                paths[name] = path
        patient = patients.setdefault(pid, FolderPatient(pid))
        patient.frames.append(ListedFrame(pid, frame, phase, paths["image"], paths["label"], where))
        cine = paths.get("cine")
        if cine is not None:
            if patient.cine is not None and patient.cine != cine:
                raise ValueError(f"{where}: {pid}: cine {cine} differs from {patient.cine} of an earlier row")
            patient.cine = cine
    if not patients:
        raise ValueError(f"case table {table} lists no cases")
    return patients


def assign_phases(patient: FolderPatient) -> FolderPatient:
    """The patient with ``frames`` = [ED, ES] (see the module docstring); ValueError naming the patient."""
    pid, frames = patient.patient_id, patient.frames
    if len(frames) != 2:
        listed = "; ".join(f.where for f in frames)
        raise ValueError(f"{pid}: {len(frames)} labeled frame(s) listed ({listed}); convert-folder needs exactly "
                         "two per patient, ED and ES")
    phases = [f.phase for f in frames]
    numbers = [f.frame for f in frames]
    if None not in numbers and numbers[0] == numbers[1]:
        raise ValueError(f"{pid}: both labeled frames are frame {numbers[0]} ({frames[0].where}; {frames[1].where})")
    if all(phases):
        if sorted(phases) != list(PHASES):
            raise ValueError(f"{pid}: labeled frames have phases {phases}; expected one ED and one ES")
        ordered = sorted(frames, key=lambda f: PHASES.index(f.phase))
    elif any(phases):
        raise ValueError(f"{pid}: only one of the two labeled frames has a phase ({frames[0].where}; {frames[1].where})")
    elif None in numbers:
        raise ValueError(f"{pid}: labeled frames without frame number or phase")
    else:
        ordered = [replace(f, phase=p) for f, p in zip(sorted(frames, key=lambda f: f.frame), PHASES)]
    if None in [f.frame for f in ordered]:
        if patient.cine is not None:
            raise ValueError(f"{pid}: the labeled frames have no frame numbers, so they cannot be placed in the cine "
                             f"{patient.cine.name}; put {{frame}} in the pattern")
        ordered = [replace(f, frame=i) for i, f in enumerate(ordered, start=1)]
    return FolderPatient(pid, ordered, patient.cine)
