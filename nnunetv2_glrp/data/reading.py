"""Reading preprocessed nnU-Net cases (image array and properties) without touching the labels.

Uses nnU-Net's own dataset class (``infer_dataset_class``: blosc2 ``.b2nd`` in 2.8, numpy otherwise) to
list identifiers and open the image lazily (blosc2 memory-maps, so reading one slice decompresses only
its chunks). Open arrays are cached per process.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np


@lru_cache(maxsize=None)
def _dataset(folder: str):
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    try:
        cls = infer_dataset_class(folder)
    except AssertionError as e:
        raise ValueError(f"{folder}: not a preprocessed nnU-Net folder ({e})") from e
    return cls(folder)


def list_identifiers(folder: Path) -> list[str]:
    return sorted(_dataset(os.fspath(folder)).identifiers)


@lru_cache(maxsize=4096)
def _open_image(folder: str, case: str):
    ds = _dataset(folder)
    try:
        data, _seg, _prev, _props = ds.load_case(case)  # seg is opened lazily, never read
    except FileNotFoundError as e:
        raise FileNotFoundError(f"case {case} in {folder}: {e}") from e
    return data


def read_properties(folder: Path, case: str) -> dict:
    from batchgenerators.utilities.file_and_folder_operations import load_pickle

    path = Path(folder) / f"{case}.pkl"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (properties of case {case})")
    return load_pickle(os.fspath(path))


def image_shape(folder: Path, case: str) -> tuple[int, ...]:
    """[C, Z, Y, X] shape of a case's preprocessed image."""
    return tuple(int(s) for s in _open_image(os.fspath(folder), case).shape)


def read_slice(folder: str, case: str, index: int) -> np.ndarray:
    """Slice ``index`` along axis 0 of the preprocessed image: float32 [C, Y, X]."""
    data = _open_image(folder, case)
    return np.ascontiguousarray(data[:, index], dtype=np.float32)
