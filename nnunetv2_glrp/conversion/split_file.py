"""A published patient-level split read from a file instead of drawn (``convert-acdc --split_file``).

Two formats: JSON ``{"train": [...], "val": [...], "test": [...]}`` of patient ids (``test`` may be
omitted or empty), or CSV with the header ``patient,set`` and one row per patient (``set`` is
train, val or test). The split is taken as given and checked against the patients the converter
found: every patient exactly once, none missing, none unknown, train and val not empty. Every
problem is a ValueError naming the file and the offending ids. The record gets ``split`` =
``"file"`` and ``split_file`` = {path, sha256} so the split can be traced to its source.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from pathlib import Path

SETS = ("train", "val", "test")


def _ids(ids: list[str], limit: int = 10) -> str:
    shown = ", ".join(sorted(ids)[:limit])
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > limit else "")


def _parse(path: Path, text: str) -> dict[str, list[str]]:
    """The file's sets as given (lists, duplicates kept) or ValueError naming the file."""
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"split file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"split file {path}: expected an object with train/val/test lists")
        unknown_keys = sorted(set(data) - set(SETS))
        if unknown_keys:
            raise ValueError(f"split file {path}: unknown entries {unknown_keys}; expected train, val, test")
        sets = {}
        for s in SETS:
            value = data.get(s, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"split file {path}: {s!r} must be a list of patient ids")
            sets[s] = [v.strip() for v in value]
        return sets
    if path.suffix.lower() == ".csv":
        rows = list(csv.reader(io.StringIO(text)))
        header = [h.strip().lower() for h in rows[0]] if rows else []
        if header[:2] != ["patient", "set"]:
            raise ValueError(f"split file {path}: the CSV header must be 'patient,set', got {','.join(header)!r}")
        sets = {s: [] for s in SETS}
        for number, row in enumerate(rows[1:], start=2):
            if not row or not "".join(row).strip():
                continue
            if len(row) < 2 or row[1].strip().lower() not in SETS:
                raise ValueError(f"split file {path}, line {number}: expected 'patient,train|val|test', "
                                 f"got {','.join(row)!r}")
            sets[row[1].strip().lower()].append(row[0].strip())
        return sets
    raise ValueError(f"split file {path}: expected a .json or .csv file")


def read_split_file(path: str | os.PathLike, patients: list[str]) -> tuple[dict[str, list[str]], dict]:
    """(sorted train/val/test sets, provenance {path, sha256}) of ``path`` checked against ``patients``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} not found")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(f"split file {path} is not UTF-8 text") from exc
    sets = _parse(path, text)
    seen: dict[str, list[str]] = {}
    for s in SETS:
        for pid in sets[s]:
            seen.setdefault(pid, []).append(s)
    repeated = [f"{pid} ({'+'.join(where)})" for pid, where in seen.items() if len(where) > 1]
    if repeated:
        raise ValueError(f"split file {path}: patients listed more than once: {_ids(repeated)}")
    unknown = sorted(set(seen) - set(patients))
    if unknown:
        raise ValueError(f"split file {path}: patients not found in the source folder: {_ids(unknown)}")
    missing = sorted(set(patients) - set(seen))
    if missing:
        raise ValueError(f"split file {path}: patients of the source folder not assigned to any set: {_ids(missing)}")
    empty = [s for s in ("train", "val") if not sets[s]]
    if empty:
        raise ValueError(f"split file {path}: no {' and no '.join(empty)} patients; training and validation "
                         "need at least one patient each")
    provenance = {"path": os.fspath(path.resolve()), "sha256": hashlib.sha256(raw).hexdigest()}
    return {s: sorted(sets[s]) for s in SETS}, provenance
