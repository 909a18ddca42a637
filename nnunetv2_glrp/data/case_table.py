"""Per-folder table of preprocessed cases (slice count, crop start, stack size), cached next to the cases.

Building the slice index needs, for every case, its ``.pkl`` properties and the shape of its image: one pickle
load and one array-header read per case, about a minute for the ~50,000 frames of 2,000 cine patients. The table
of one preprocessed folder is therefore written once, beside the folder, to
``<parent>/<folder name>.glrp_slice_index.npz`` (a numpy archive; not inside the folder, where nnU-Net infers
the dataset format from the file endings and lists cases by ending), atomically (``atomic_files.atomic_output``),
and reused while the folder is unchanged.

Key: a sha1 of the name, size and modification time (ns) of every file of the folder (hidden temporary files
aside): adding, removing or rewriting a case rebuilds the table. The archive also
holds a sha1 of its own arrays; an archive that cannot be read, lacks a field or fails that checksum (a
corrupt or half-written file, which atomic writes should never leave but a full disk or a copy can) is logged
as a warning and rebuilt. A folder that cannot be written (read-only shared data) works, uncached.

The table holds every case of the folder, test patients' included (only their shapes and crop boxes:
labels are never read); a case whose properties are unusable is stored with ``n_slices = -1`` and its error
is raised, by :func:`case_row`, only when the index needs that case.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_output
from nnunetv2_glrp.data.positions import slice_positions
from nnunetv2_glrp.data.reading import image_shape, list_identifiers, read_properties

logger = logging.getLogger(__name__)

CACHE_SUFFIX = ".glrp_slice_index.npz"
CACHE_VERSION = 1
_FIELDS = ("names", "n_slices", "starts", "ms")


@dataclass(frozen=True)
class CaseTable:
    """Sorted case identifiers of a folder and, per case, its slice count, crop start and original stack size."""

    names: np.ndarray  # str
    n_slices: np.ndarray  # int32; -1: properties unusable (see case_row)
    starts: np.ndarray  # int32: crop start along the slice axis (n of slice k is start + k + 1)
    ms: np.ndarray  # int32: slices of the original stack

    def checksum(self) -> str:
        h = hashlib.sha1()
        h.update("\n".join(self.names.tolist()).encode("utf-8"))
        for a in (self.n_slices, self.starts, self.ms):
            h.update(np.ascontiguousarray(a, dtype=np.int32).tobytes())
        return h.hexdigest()


def case_row(folder: Path, case: str) -> tuple[int, int, int]:
    """(slice count, crop start, stack size m) of ``case``; ValueError/FileNotFoundError naming it when unusable."""
    positions = slice_positions(read_properties(folder, case), image_shape(folder, case)[1], case)
    return len(positions), positions[0][0] - 1, positions[0][1]


def cache_path(folder: Path) -> Path:
    """Where the case table of ``folder`` is cached: beside it, ``<folder name>.glrp_slice_index.npz``."""
    folder = Path(folder).resolve()
    return folder.parent / f"{folder.name}{CACHE_SUFFIX}"


def folder_signature(folder: Path) -> str:
    """sha1 of (name, size, mtime_ns) of every file in ``folder`` except hidden ones (temporary files)."""
    entries = []
    with os.scandir(folder) as it:
        for e in it:
            if e.name.startswith(".") or not e.is_file():
                continue
            st = e.stat()
            entries.append(f"{e.name}\0{st.st_size}\0{st.st_mtime_ns}")
    h = hashlib.sha1(f"glrp case table v{CACHE_VERSION}\n".encode("utf-8"))
    h.update("\n".join(sorted(entries)).encode("utf-8"))
    return h.hexdigest()


def build_case_table(folder: Path) -> CaseTable:
    names = list_identifiers(folder)
    rows = np.full((len(names), 3), -1, dtype=np.int32)
    for i, case in enumerate(names):
        try:
            rows[i] = case_row(folder, case)
        except Exception:  # noqa: BLE001 - kept as -1; case_row re-raises it if the index needs this case
            pass
    return CaseTable(np.asarray(names, dtype=str), rows[:, 0].copy(), rows[:, 1].copy(), rows[:, 2].copy())


def _read_cache(path: Path, signature: str) -> CaseTable | None:
    """The cached table, or None (logged) when absent, stale, unreadable or corrupt."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            version, stored_signature, checksum = int(z["version"]), str(z["signature"]), str(z["checksum"])
            table = CaseTable(*(np.array(z[f]) for f in _FIELDS))
    except Exception as e:  # noqa: BLE001 - any unreadable archive is rebuilt
        logger.warning("slice index cache %s is corrupt or half-written (%s: %s): rebuilding it", path,
                       type(e).__name__, e)
        return None
    if version != CACHE_VERSION or stored_signature != signature:
        logger.info("slice index cache %s is stale (the preprocessed cases changed): rebuilding it", path)
        return None
    if table.checksum() != checksum or not (len(table.names) == len(table.n_slices) == len(table.starts)
                                            == len(table.ms)):
        logger.warning("slice index cache %s is corrupt (checksum mismatch): rebuilding it", path)
        return None
    return table


def _write_cache(path: Path, table: CaseTable, signature: str) -> None:
    try:
        with atomic_output(path) as tmp, open(tmp, "wb") as f:
            np.savez(f, version=np.int64(CACHE_VERSION), signature=np.str_(signature),
                     checksum=np.str_(table.checksum()), **{k: getattr(table, k) for k in _FIELDS})
    except OSError as e:
        logger.warning("could not write the slice index cache %s (%s): the index is rebuilt next time", path, e)


def case_table(folder: Path, use_cache: bool = True) -> CaseTable:
    """The case table of ``folder``: from its cache when the folder is unchanged, else built (and cached)."""
    folder = Path(folder)
    path = cache_path(folder)
    signature = folder_signature(folder)
    if use_cache:
        table = _read_cache(path, signature)
        if table is not None:
            return table
    t0 = time.perf_counter()
    table = build_case_table(folder)
    logger.info("indexed %d preprocessed cases of %s in %.1f s", len(table.names), folder, time.perf_counter() - t0)
    if use_cache and folder_signature(folder) == signature:  # not while the folder changed under us
        _write_cache(path, table, signature)
    return table
