"""Reading preprocessed nnU-Net cases (image array and properties) without touching the labels.

Uses nnU-Net's own dataset class (``infer_dataset_class``: blosc2 ``.b2nd`` in 2.8, numpy otherwise) to
list identifiers and open the image lazily (blosc2 memory-maps, so reading one slice decompresses only
its chunks; the image file alone is opened, not the segmentation nor the properties). Open arrays are cached per process, least recently used first out, at most
``MAX_OPEN_CASES`` (256) of them: every open blosc2 array holds one file descriptor and one memory map,
and real ACDC has about 3,200 preprocessed cases (ED/ES + cine frames) against a usual soft limit of
1024 descriptors. A cache miss costs one ``blosc2.open`` of the case (header only, no decompression).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
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
    """The case identifiers in ``folder`` now (listed afresh: the folder may have changed in this process)."""
    folder = os.fspath(folder)
    return sorted(_dataset(folder).get_identifiers(folder))


MAX_OPEN_CASES = 256
_open_cases: OrderedDict[tuple[str, str], object] = OrderedDict()
_open_cases_lock = threading.Lock()


def _open_image(folder: str, case: str):
    """The lazily opened image array of ``case``, from the LRU cache of at most ``MAX_OPEN_CASES``."""
    key = (folder, case)
    with _open_cases_lock:
        if key in _open_cases:
            _open_cases.move_to_end(key)
            return _open_cases[key]
    ds = _dataset(folder)
    try:
        data = _load_image(ds, folder, case)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"case {case} in {folder}: {e}") from e
    with _open_cases_lock:
        _open_cases[key] = data
        while len(_open_cases) > max(int(MAX_OPEN_CASES), 1):
            _open_cases.popitem(last=False)  # dropping the last reference closes its descriptor and map
    return data


def _load_image(ds, folder: str, case: str):
    """The image array alone: blosc2 ``.b2nd`` memory-mapped (header only; a slice read decompresses its chunks),
    without opening the segmentation or loading the properties as ``load_case`` does; other formats through
    nnU-Net's ``load_case`` (numpy: ``.npy`` memory-mapped when unpacked, else the ``.npz`` read whole)."""
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    if isinstance(ds, nnUNetDatasetBlosc2):
        import blosc2

        path = os.path.join(folder, f"{case}.b2nd")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path} not found")
        return blosc2.open(urlpath=path, mode="r", dparams={"nthreads": 1}, **getattr(ds, "mmap_kwargs", {}))
    data, _seg, _prev, _props = ds.load_case(case)  # seg is opened lazily, never read
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
