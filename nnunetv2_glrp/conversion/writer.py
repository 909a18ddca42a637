"""Atomic writer of an nnU-Net raw dataset folder, and the optional N4 bias-field correction.

The dataset is built in a hidden temporary sibling ``.DatasetXXX_Name.tmp-XXXX`` of the target
and renamed into place only when complete, so an interrupted or failed conversion never leaves a
half-written ``DatasetXXX_Name``. Temporary folders left by a killed run are removed on the next
run for the same dataset. With ``overwrite=True`` an existing target is first renamed aside
(``.DatasetXXX_Name.old-XXXX``), then the new folder takes its name, then the old one is deleted.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

logger = logging.getLogger(__name__)

SUBFOLDERS = ("imagesTr", "labelsTr", "imagesTs", "labelsTs", "unlabeledTr")


@dataclass(frozen=True)
class N4Config:
    """N4 settings (ours; the paper only says "N4"): Otsu foreground mask, 4x in-plane shrink,
    3 fitting levels of at most 50 iterations, ITK's default convergence threshold 1e-3."""

    shrink_factor: int = 4
    iterations: tuple[int, ...] = (50, 50, 50)
    convergence_threshold: float = 1e-3


def fit_log_bias(image: sitk.Image, config: N4Config = N4Config()) -> np.ndarray:
    """N4 log bias field [Z, Y, X] of a 3D image, fitted on an in-plane shrunken copy (slices are
    already sparse) inside an Otsu foreground mask and evaluated at full resolution."""
    float_image = sitk.Cast(image, sitk.sitkFloat32)
    mask = sitk.OtsuThreshold(float_image, 0, 1, 200)
    shrink = [config.shrink_factor, config.shrink_factor, 1]
    small, small_mask = sitk.Shrink(float_image, shrink), sitk.Shrink(mask, shrink)
    corrector = sitk.N4BiasFieldCorrectionImageFilter()
    corrector.SetMaximumNumberOfIterations(list(config.iterations))
    corrector.SetConvergenceThreshold(config.convergence_threshold)
    corrector.Execute(small, small_mask)
    return sitk.GetArrayFromImage(corrector.GetLogBiasFieldAsImage(float_image))


def apply_log_bias(image: sitk.Image, log_bias: np.ndarray) -> sitk.Image:
    """float32 image / exp(log_bias), same geometry."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    if array.shape != log_bias.shape:
        raise ValueError(f"bias field shape {log_bias.shape} does not match image shape {array.shape}")
    corrected = sitk.GetImageFromArray((array / np.exp(log_bias)).astype(np.float32))
    corrected.CopyInformation(image)
    return corrected


def n4_correct(image: sitk.Image, config: N4Config = N4Config()) -> sitk.Image:
    """N4-corrected float32 copy of a 3D image (its own bias field)."""
    return apply_log_bias(image, fit_log_bias(image, config))


def existing_datasets_with_id(raw_root: Path, dataset_id: int) -> list[Path]:
    prefix = f"Dataset{dataset_id:03d}_"
    if not raw_root.is_dir():
        return []
    return sorted(p for p in raw_root.iterdir() if p.is_dir() and p.name.startswith(prefix))


class RawDatasetBuilder:
    """Collects a dataset in a temporary folder; ``commit()`` renames it to ``raw_root/name``."""

    def __init__(self, raw_root: Path, name: str, overwrite: bool = False, n4: N4Config | None = None):
        self.raw_root = Path(raw_root)
        self.name = name
        self.target = self.raw_root / name
        self.overwrite = overwrite
        self.n4 = n4
        if self.target.exists() and not overwrite:
            raise FileExistsError(f"{self.target} already exists; pass --overwrite to replace it")
        try:
            self.raw_root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OSError(f"cannot create the nnUNet_raw folder {self.raw_root}: {exc.strerror or exc}") from None
        for stale in self.raw_root.glob(f".{name}.tmp-*"):
            logger.warning("removing %s left by an interrupted conversion", stale)
            shutil.rmtree(stale, ignore_errors=True)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=self.raw_root))
        for sub in SUBFOLDERS:
            (self.tmp / sub).mkdir()

    def write_image(self, image: sitk.Image, subfolder: str, filename: str, is_label: bool = False,
                    log_bias: np.ndarray | None = None) -> Path:
        """Write one image; returns its final path. With N4 on, non-label images are corrected with
        ``log_bias`` when given (a field shared by a patient's frames), else with their own field."""
        if not is_label and self.n4 is not None:
            image = apply_log_bias(image, log_bias) if log_bias is not None else n4_correct(image, self.n4)
        sitk.WriteImage(image, os.fspath(self.tmp / subfolder / filename), useCompression=True)
        return self.target / subfolder / filename

    def write_json(self, filename: str, data: dict) -> None:
        (self.tmp / filename).write_text(json.dumps(data, indent=2))

    def n4_record(self) -> dict | None:
        return None if self.n4 is None else asdict(self.n4)

    def commit(self) -> Path:
        old = None
        if self.target.exists():
            if not self.overwrite:
                raise FileExistsError(f"{self.target} appeared during conversion; not replacing it")
            old = Path(tempfile.mkdtemp(prefix=f".{self.name}.old-", dir=self.raw_root))
            os.replace(self.target, old / self.name)
        os.replace(self.tmp, self.target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        logger.info("dataset written: %s", self.target)
        return self.target

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)
