"""Checks shared by the converter tests: bad input ends a ``convert-*`` command with one clear error line and
leaves nothing behind in nnUNet_raw; reading a converted dataset's images and split record."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.cli import main


def read_array(path: Path) -> np.ndarray:
    """The voxel array [Z, Y, X] (or [T, Z, Y, X]) of an image file."""
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def split_record(out: Path) -> dict:
    """The ``glrp_split.json`` record of a converted dataset folder."""
    return json.loads((out / "glrp_split.json").read_text(encoding="utf-8"))


def assert_nothing_left(raw: Path) -> None:
    """``raw`` (the nnUNet_raw of a failed conversion) is absent or empty."""
    assert not raw.exists() or list(raw.iterdir()) == [], f"left behind in {raw}: {sorted(raw.iterdir())}"


def assert_one_line_error_and_nothing_left(argv: list[str], message: str, raw: Path, capsys, monkeypatch) -> None:
    """``nnUNetv2_glrp *argv`` with nnUNet_raw = ``raw`` exits with 2 and prints exactly one stderr line
    (progress bars aside), ``nnUNetv2_glrp <command>: error: ...`` matching the regex ``message``; nothing under ``raw``."""
    monkeypatch.setenv("nnUNet_raw", str(raw))
    code = main(argv)
    err = [line for line in capsys.readouterr().err.strip().splitlines() if "%|" not in line]  # progress bars aside
    assert code == 2 and len(err) == 1 and err[0].startswith(f"nnUNetv2_glrp {argv[0]}: error: "), (code, err)
    assert re.search(message, err[0]), err[0]
    assert_nothing_left(raw)
