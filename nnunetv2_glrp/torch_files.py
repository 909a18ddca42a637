"""Reading ``.pth`` files (checkpoints, pretrained encoders) with an error that names the file.

A truncated or overwritten file makes ``torch.load`` fail deep in zip or pickle code ("failed finding
central directory", "Ran out of input", "could not convert string to int", ...); :func:`load_torch_file`
turns those into one ``ValueError`` that names the file and says it is corrupt or incomplete.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

#: what torch.load raises on a damaged file (a missing class or module is not damage: not caught)
CORRUPT_FILE_ERRORS = (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile,
                       UnicodeDecodeError, IndexError)


def corrupt_file_error(path: str | os.PathLike, what: str, exc: BaseException) -> ValueError:
    reason = (str(exc).strip().splitlines() or [""])[0][:100] or type(exc).__name__
    return ValueError(f"{what} {os.fspath(path)} cannot be read: the file is corrupt or incomplete (an interrupted "
                      f"write or copy?); replace or delete it [{type(exc).__name__}: {reason}]")


def load_torch_file(path: str | os.PathLike, what: str = "checkpoint", map_location="cpu"):
    """``torch.load(path)`` (full unpickling, as nnU-Net loads its checkpoints); FileNotFoundError or a
    one-line ValueError naming ``path`` when it is missing or damaged."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except CORRUPT_FILE_ERRORS as exc:
        raise corrupt_file_error(path, what, exc) from None
