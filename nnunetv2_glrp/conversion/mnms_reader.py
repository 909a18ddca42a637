"""Reader of the M&Ms (multi-vendor, multi-centre) layout, official 4D or 3D ED/ES.

Subjects are found anywhere under the root (the release nests them as ``Training/Labeled/<id>/``,
``Validation/<id>/``, ``Testing/<id>/``):

- official: ``<id>/<id>_sa.nii.gz`` (4D cine) and ``<id>/<id>_sa_gt.nii.gz`` (4D, labeled only at ED and
  ES). A subject without ``_sa_gt`` (the release's unlabeled vendor-C subjects) is skipped with one
  warning listing them.
- 3D ED/ES: ``[<prefix>_]<id>_sa_ED.nii.gz``, ``<id>_sa_ED_gt.nii.gz``, ``<id>_sa_ES.nii.gz``,
  ``<id>_sa_ES_gt.nii.gz`` in any folder (an optional prefix such as ``better_`` is dropped; other files,
  e.g. ``_pred``, are ignored). ``SA`` in capitals is the same (M&Ms-2: ``<id>/<id>_SA_ED.nii.gz``, ...;
  its long-axis ``_LA_`` files are ignored). A ``<id>_SA_CINE.nii.gz`` (or ``_sa_cine``) 4D file beside
  them is the subject's cine: its frames are the unlabeled images and the ED/ES frame numbers come from
  the CSV or, without them, from the cine frame each 3D image equals (the converter's
  ``frames.matching_frame``). Without a cine: ED and ES are the unlabeled images. A cine file with no
  ED/ES files is an unlabeled subject, skipped with the 4D ones.

The information CSV (``info``; by default the one CSV under the root whose header has a ``Vendor``
column) gives per subject ``Vendor`` and ``Centre`` (``Center`` accepted) and, for the 4D layout,
``ED`` and ``ES``: 0-based frame indices as in the release's CSV (stored 1-based in the record). The
subject column is ``External code`` (or ``Name``, ``Subject``, ``Patient``, ``ID``, M&Ms-2's ``SUBJECT_CODE``;
headers in any case); a value such as ``A1K2P5_sa_ED_gt`` is cut at ``_sa``, and numeric ids match regardless
of zero padding (M&Ms-2 lists subject ``001`` as ``1``). Repeated rows of one subject must agree. A 4D subject without
ED/ES in the CSV is an error; CSV rows of subjects not present are only counted (the release's CSV
lists every subject of every split).
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

PHASES = ("ED", "ES")
ID_COLUMNS = ("external code", "subject_code", "name", "subject", "patient", "id")
FILE_3D = re.compile(r"^(?:(?P<prefix>.+)_)?(?P<id>[A-Za-z0-9]+)_(?i:sa)_"
                     r"(?:(?P<phase>ED|ES)(?P<gt>_gt)?|(?P<cine>(?i:cine)))\.nii\.gz$")


@dataclass
class MnmsSubject:
    subject_id: str
    layout: str  # "4d" | "3d"
    cine: Path | None = None  # 4d: the _sa.nii.gz file; 3d: the _SA_CINE.nii.gz file when there is one
    cine_label: Path | None = None  # 4d: the _sa_gt.nii.gz file
    files_3d: dict = field(default_factory=dict)  # 3d: {(phase, "image"|"label"): path}
    vendor: str | None = None
    centre: str | None = None
    frames: dict = field(default_factory=dict)  # {"ED": 1-based frame, "ES": ...} when the CSV gives them


def subject_key(sid: str) -> str:
    """How a subject id is matched between files and CSV: numeric ids without their zero padding."""
    return str(int(sid)) if sid.isdigit() else sid


def _column(header: list[str], names: tuple[str, ...]) -> int | None:
    for name in names:
        if name in header:
            return header.index(name)
    return None


def read_info(path: Path) -> dict[str, dict]:
    """{subject: {"vendor", "centre", "ED", "ES"}} of an M&Ms information CSV (ED/ES 1-based or None)."""
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="utf-8-sig"))))
    header = [h.strip().lower() for h in rows[0]] if rows else []
    cols = {"id": _column(header, ID_COLUMNS), "vendor": _column(header, ("vendor",)),
            "centre": _column(header, ("centre", "center")), "ED": _column(header, ("ed",)),
            "ES": _column(header, ("es",))}
    if cols["id"] is None or cols["vendor"] is None:
        raise ValueError(f"information CSV {path}: header {','.join(header)!r} needs a subject column "
                         f"({' / '.join(ID_COLUMNS)}) and a Vendor column")
    info: dict[str, dict] = {}
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        get = {k: (row[i].strip() if i is not None and i < len(row) else "") for k, i in cols.items()}
        sid = subject_key(re.split(r"_(?i:sa)(?:_|$)", get["id"])[0])
        if not sid:
            raise ValueError(f"information CSV {path} line {number}: empty subject id")
        entry = {"vendor": get["vendor"] or None, "centre": get["centre"] or None}
        for phase in PHASES:
            if get[phase]:
                try:
                    entry[phase] = int(float(get[phase])) + 1
                except ValueError:
                    raise ValueError(f"information CSV {path} line {number}: {phase} {get[phase]!r} is not a "
                                     "frame index") from None
            else:
                entry[phase] = None
        if sid in info and info[sid] != entry:
            raise ValueError(f"information CSV {path} line {number}: {sid} is listed again with other values "
                             f"({entry} vs {info[sid]})")
        info[sid] = entry
    return info


def find_info_csv(root: Path) -> Path | None:
    """The one CSV under ``root`` whose header names a Vendor column; None if there is none."""
    found = []
    for path in sorted(root.rglob("*.csv")):
        first = path.read_text(encoding="utf-8-sig", errors="replace").splitlines()[:1]
        if first and "vendor" in [h.strip().lower() for h in first[0].split(",")]:
            found.append(path)
    if len(found) > 1:
        raise ValueError(f"several information CSVs under {root}: {', '.join(map(str, found))}; choose one with --info")
    return found[0] if found else None


def find_subjects(root: str | Path, info: str | Path | None = None) -> tuple[list[MnmsSubject], dict]:
    """(subjects sorted by id, {"info": csv path or None, "unlabeled_skipped": [...], "csv_only": n})."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"M&Ms root folder not found: {root}")
    subjects: dict[str, MnmsSubject] = {}
    unlabeled = []
    for path in sorted(root.rglob("*_sa.nii.gz")):
        sid = path.name[: -len("_sa.nii.gz")]
        if path.parent.name != sid:
            continue
        if sid in subjects:
            raise ValueError(f"subject {sid} found twice: {subjects[sid].cine} and {path}")
        label = path.parent / f"{sid}_sa_gt.nii.gz"
        if not label.is_file():
            unlabeled.append(sid)
            continue
        subjects[sid] = MnmsSubject(sid, "4d", cine=path, cine_label=label)
    for path in sorted(root.rglob("*_[sS][aA]_*.nii.gz")):
        m = FILE_3D.match(path.name)
        if not m:
            continue
        sid = m.group("id")
        subject = subjects.setdefault(sid, MnmsSubject(sid, "3d"))
        if subject.layout != "3d":
            raise ValueError(f"subject {sid} is in both layouts: {subject.cine} and {path}")
        if m.group("cine"):
            if subject.cine is not None:
                raise ValueError(f"subject {sid}: two cine files: {subject.cine} and {path}")
            subject.cine = path
            continue
        key = (m.group("phase"), "label" if m.group("gt") else "image")
        if key in subject.files_3d:
            raise ValueError(f"subject {sid}: two {key[0]} {key[1]} files: {subject.files_3d[key]} and {path}")
        subject.files_3d[key] = path
    for sid in [s for s, subject in subjects.items() if subject.layout == "3d" and not subject.files_3d]:
        unlabeled.append(sid)  # a cine without ED/ES files
        del subjects[sid]
    if unlabeled:
        logger.warning("skipped %d M&Ms subject(s) without labels (no _sa_gt.nii.gz, or a cine without ED/ES "
                       "files): %s", len(unlabeled), ", ".join(sorted(unlabeled)))
    if not subjects:
        raise FileNotFoundError(f"no M&Ms subjects under {root} (<id>/<id>_sa.nii.gz + _sa_gt.nii.gz, or "
                                "<id>_sa_ED.nii.gz + _sa_ED_gt.nii.gz + ES)")
    for subject in subjects.values():
        if subject.layout == "3d":
            missing = [f"{p} {k}" for p in PHASES for k in ("image", "label") if (p, k) not in subject.files_3d]
            if missing:
                where = next(iter(subject.files_3d.values())).parent
                raise FileNotFoundError(f"{subject.subject_id}: {', '.join(missing)} file missing in {where} "
                                        f"(expected {subject.subject_id}_sa_ED.nii.gz, _sa_ED_gt.nii.gz, _sa_ES..., "
                                        "_sa_ES_gt...)")
    info_path = Path(info) if info is not None else find_info_csv(root)
    if info_path is not None and not info_path.is_file():
        raise FileNotFoundError(f"information CSV {info_path} not found")
    table = read_info(info_path) if info_path is not None else {}
    for sid, subject in subjects.items():
        entry = table.get(subject_key(sid))
        if entry is not None:
            subject.vendor, subject.centre = entry["vendor"], entry["centre"]
            subject.frames = {p: entry[p] for p in PHASES if entry[p] is not None}
        if subject.layout == "4d" and len(subject.frames) != 2:
            source = f"the information CSV {info_path}" if info_path else "an information CSV (none found; give --info)"
            raise ValueError(f"{sid}: {subject.cine.name} is 4D but {source} gives no ED and ES frame for {sid}")
    extra = sorted(set(table) - {subject_key(s) for s in subjects})
    notes = {"info": None if info_path is None else str(info_path.resolve()), "unlabeled_skipped": unlabeled,
             "csv_only": len(extra)}
    return sorted(subjects.values(), key=lambda s: s.subject_id), notes
