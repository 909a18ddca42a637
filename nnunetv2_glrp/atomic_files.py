"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A reader never sees a half-written file and a killed process leaves the previous version intact;
a failed write removes its temporary file. :func:`replacing_folder` does the same for a whole folder.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: str | os.PathLike, data, indent: int = 2, **dumps_kwargs) -> None:
    """``json.dumps(data)`` written to ``path`` atomically."""
    atomic_write_text(path, json.dumps(data, indent=indent, **dumps_kwargs))


@contextmanager
def atomic_output(path: str | os.PathLike):
    """Yield a temporary path beside ``path`` with the same name ending (``.nii.gz``, ``.npz``) for a
    writer that takes a file name; it is renamed to ``path`` when the block ends without an error and
    removed otherwise. Temporary names start with ``.`` and contain ``.tmp``."""
    path = Path(path)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def replacing_folder(target: str | os.PathLike, overwrite: bool = False):
    """Build a folder atomically: yield a temporary sibling, which replaces ``target`` on success.

    ``target`` must be absent or an empty folder unless ``overwrite`` (FileExistsError otherwise,
    before anything is written). On success an existing ``target`` is first renamed aside, the new
    folder takes its name, then the old one is deleted; on failure the temporary folder is removed
    and ``target`` is untouched. Temporary folders left by a killed run are removed first."""
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise FileExistsError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise FileExistsError(f"{target} is not empty; refusing to mix old and new files "
                              "(pass overwrite=True / --overwrite to replace it)")
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        yield tmp
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
