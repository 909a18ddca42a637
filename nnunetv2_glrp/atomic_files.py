"""Atomic file writes: a temporary name in the same folder, then ``os.replace``.

A reader never sees a half-written file and a killed process leaves the previous version intact;
a failed write removes its temporary file.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
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
