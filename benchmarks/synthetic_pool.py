"""A cheap synthetic pretraining pool written straight in nnU-Net's preprocessed format, for the pool benchmark.

NOT the phantom pipeline: generating thousands of phantom patients and running nnU-Net's preprocessing on them
would take hours on a 2-core machine, and the pool benchmark only measures the index, the sampler and the
loader, which see nothing but the preprocessed files. So this writes, per phantom patient, ``frames`` cases
(2 "labeled" ED/ES frames in ``labeled/``, the rest "unlabeled" cine frames in ``unlabeled/``) of float32
z-scored images with nnU-Net's own writer (``nnUNetDatasetBlosc2.save_case``, chunks and blocks from its
``comp_blosc2_params`` for the 128 x 128 patch of the ``nnunet_cpu`` plan), the ``.pkl`` properties the index
reads (crop box, shape before cropping, spacing 10 x 2.5 x 2.5 mm) and an all-zero segmentation, and the
``glrp_split.json`` (80 % train, 10 % val, 10 % test patients). Shapes are those of ACDC at the plan's 2.5 mm:
8-12 slices of about 140 x 130 px, a crop box that sometimes drops the first slice. The image is a blurred
bright disc (the blood pool) whose radius beats with the frame, over smooth background, plus Gaussian noise:
like resampled MRI it compresses only ~1.1x, so the bytes read per slice are realistic. Difference from
nnU-Net's preprocessing: the codec is plain LZ4 at level 1 with the shuffle filter (nnU-Net: LZ4HC level 5, filter
chosen by trial) to write fast; both are LZ4 streams, so reading costs about the same.

The pool is written once into ``store/`` (resumable: a case counts as written once its ``.pkl``, written last,
exists) and every pool of the first N patients is a folder of symbolic links into it (:func:`pool_of`).
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np

PATCH = (128, 128)
LABELED_FRAMES = 2


def _patient_shape(rng: np.random.Generator) -> tuple[int, int, int, int]:
    """(slices kept, original slices m, crop start, H, W)."""
    z = int(rng.integers(8, 13))
    start = int(rng.random() < 0.3)
    return z, z + start + int(rng.random() < 0.2), start, int(rng.integers(124, 160)), int(rng.integers(116, 150))


def _frame(rng, z: int, h: int, w: int, phase: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    cy, cx = h / 2 + rng.normal(0, 2), w / 2 + rng.normal(0, 2)
    data = np.empty((1, z, h, w), dtype=np.float32)
    for k in range(z):
        r = (14 + 8 * (1 - k / max(z - 1, 1))) * (1 - 0.25 * np.sin(np.pi * phase))  # base large, apex small
        disc = 1 / (1 + np.exp(((yy - cy) ** 2 + (xx - cx) ** 2) ** 0.5 - r))
        data[0, k] = 0.6 * disc + 0.3 * np.exp(-((yy - h / 2) ** 2 + (xx - w / 2) ** 2) / (2 * (h / 3) ** 2))
    data += rng.normal(0, 0.08, data.shape).astype(np.float32)
    return (data - data.mean()) / data.std()


def _save(folder: Path, case: str, data: np.ndarray, m: int, start: int) -> None:
    import blosc2
    from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2

    _, z, h, w = data.shape
    seg = np.zeros(data.shape, dtype=np.int8)
    blocks, chunks = comp_blosc2_params(data.shape, PATCH, data.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, PATCH, seg.itemsize)
    props = {"bbox_used_for_cropping": [[start, start + z], [0, h], [0, w]], "shape_before_cropping": (m, h, w),
             "spacing": [10.0, 2.5, 2.5], "synthetic_pool": True}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nnUNetDatasetBlosc2.save_case(data, seg, props, os.fspath(folder / case), chunks=chunks, blocks=blocks,
                                      chunks_seg=chunks_seg, blocks_seg=blocks_seg, clevel=1, codec=blosc2.Codec.LZ4,
                                      filters=[blosc2.Filter.SHUFFLE], filters_seg=[blosc2.Filter.SHUFFLE])


def patient_name(i: int) -> str:
    return f"patient{i + 1:05d}"


def patient_set(i: int) -> str:
    return "test" if i % 10 == 9 else "val" if i % 10 == 8 else "train"


def case_names(i: int, frames: int) -> list[tuple[str, str]]:
    """(case, kind) of patient ``i``: ED/ES labeled, the other frames unlabeled."""
    return [(f"{patient_name(i)}_frame{f + 1:02d}", "labeled" if f < LABELED_FRAMES else "unlabeled")
            for f in range(frames)]


def write_store(store: Path, n_patients: int, frames: int, seed: int = 0, log_every: int = 100) -> None:
    """Patients 0..n_patients-1 into ``store/labeled`` and ``store/unlabeled`` (resumable)."""
    for kind in ("labeled", "unlabeled"):
        (store / kind).mkdir(parents=True, exist_ok=True)
    for i in range(n_patients):
        names = case_names(i, frames)
        if all((store / kind / f"{case}.pkl").is_file() for case, kind in names):
            continue
        rng = np.random.default_rng([seed, i])
        z, m, start, h, w = _patient_shape(rng)
        for f, (case, kind) in enumerate(names):
            _save(store / kind, case, _frame(rng, z, h, w, f / frames), m, start)
        if log_every and (i + 1) % log_every == 0:
            print(f"  synthetic pool: {i + 1}/{n_patients} patients written", flush=True)


def split_of(n_patients: int, frames: int) -> dict:
    """``glrp_split.json`` content of the first ``n_patients`` patients."""
    split = {s: [patient_name(i) for i in range(n_patients) if patient_set(i) == s] for s in ("train", "val", "test")}
    split["cases"] = {case: {"patient": patient_name(i), "set": patient_set(i), "kind": kind}
                      for i in range(n_patients) for case, kind in case_names(i, frames)}
    return split


def pool_of(root: Path, n_patients: int, frames: int, seed: int = 0) -> tuple[Path, Path, dict]:
    """(labeled folder, unlabeled folder, split) of the pool of the first ``n_patients`` patients under ``root``:
    the store is completed up to ``n_patients``, the pool folder made of symbolic links to its files."""
    store = root / f"store_f{frames}_s{seed}"
    write_store(store, n_patients, frames, seed)
    pool = root / f"pool_{n_patients}_f{frames}_s{seed}"
    split = split_of(n_patients, frames)
    for kind in ("labeled", "unlabeled"):
        folder = pool / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(n_patients):
            for case, k in case_names(i, frames):
                if k != kind:
                    continue
                for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
                    link = folder / f"{case}{suffix}"
                    if not link.is_symlink():
                        link.symlink_to(store / kind / f"{case}{suffix}")
    (pool / "glrp_split.json").write_text(json.dumps(split), encoding="utf-8")
    return pool / "labeled", pool / "unlabeled", split
