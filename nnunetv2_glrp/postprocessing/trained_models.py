"""The fused models: nnU-Net output folders, their predictors and fused probabilities of one case.

Predictions go through nnU-Net's Python API (``nnUNetPredictor.predict_single_npy_array`` with
probabilities), which reverts nnU-Net's cropping, resampling and transposition: the returned
probabilities are (C, z, y, x) on the image's own grid, as in nnU-Net's ``.npz`` exports.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunetv2_glrp.postprocessing.fusion import check_probabilities, fuse_probabilities
from nnunetv2_glrp.postprocessing.registration import REGISTRATION_FILE


def model_folder(results_root: str | os.PathLike | None, dataset_name: str, trainer: str, plans: str,
                 configuration: str, fold: int | str) -> Path:
    """nnU-Net's fold folder of a model: ``get_output_folder`` (``$nnUNet_results`` as nnU-Net read it at
    import) when ``results_root`` is None, else nnU-Net's same layout below ``results_root`` (nnU-Net's own
    ``trainer__plans__configuration`` spelling either way)."""
    from nnunetv2.utilities.file_path_utilities import convert_trainer_plans_config_to_identifier, get_output_folder

    if results_root is None:
        return Path(get_output_folder(dataset_name, trainer, plans, configuration, fold))
    return (Path(results_root) / dataset_name / convert_trainer_plans_config_to_identifier(trainer, plans, configuration)
            / f"fold_{fold}")


@dataclass(frozen=True)
class Ensemble:
    """Trainers of one dataset / plans / configuration / fold whose probabilities are averaged."""

    dataset: str
    configuration: str
    fold: str
    trainers: tuple[str, ...]
    plans: str = "nnUNetPlans"
    checkpoint: str = "checkpoint_final.pth"
    weights: tuple[float, ...] | None = None
    #: nnU-Net results tree the trainers live in; None: ``$nnUNet_results`` as nnU-Net read it at import.
    #: the run engine trains every seed into its own tree (``reproduction.grid.results_root``).
    results_root: str | None = None

    def __post_init__(self):
        if not self.trainers:
            raise ValueError("name at least one trainer (-tr)")
        if self.weights is not None and len(self.weights) != len(self.trainers):
            raise ValueError(f"{len(self.weights)} weights for {len(self.trainers)} trainers")

    @property
    def dataset_name(self) -> str:
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

        return maybe_convert_to_dataset_name(self.dataset)

    def fold_folder(self, trainer: str) -> Path:
        return model_folder(self.results_root, self.dataset_name, trainer, self.plans, self.configuration, self.fold)

    @property
    def registration_path(self) -> Path:
        """``crf.json`` lives in the first trainer's fold folder."""
        return self.fold_folder(self.trainers[0]) / REGISTRATION_FILE

    def check_trained(self) -> None:
        for trainer in self.trainers:
            checkpoint = self.fold_folder(trainer) / self.checkpoint
            if not checkpoint.is_file():
                raise FileNotFoundError(f"trainer {trainer}: no checkpoint {checkpoint} (train fold {self.fold} first)")

    def context(self) -> dict:
        return {"dataset": self.dataset_name, "configuration": self.configuration, "fold": self.fold,
                "plans": self.plans, "checkpoint": self.checkpoint, "trainers": list(self.trainers),
                "weights": list(self.weights) if self.weights else None,
                **({"results_root": self.results_root} if self.results_root is not None else {})}


def load_predictors(ensemble: Ensemble, device: str = "cpu") -> list:
    """One initialised ``nnUNetPredictor`` per trainer (nnU-Net's defaults: Gaussian, mirroring, step 0.5)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    ensemble.check_trained()
    predictors = []
    for trainer in ensemble.trainers:
        predictor = nnUNetPredictor(device=torch.device(device), perform_everything_on_device=device == "cuda",
                                    allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(os.fspath(ensemble.fold_folder(trainer).parent),
                                                       (ensemble.fold,), ensemble.checkpoint)
        predictors.append(predictor)
    return predictors


def predict_probabilities(predictor, image_files: Sequence[Path]) -> tuple[np.ndarray, dict]:
    """Probabilities (C, z, y, x) of one case and nnU-Net's properties of its image."""
    reader = predictor.plans_manager.image_reader_writer_class()
    data, properties = reader.read_images([os.fspath(f) for f in image_files])
    _, probs = predictor.predict_single_npy_array(data, properties, None, None, True)
    return np.asarray(probs, dtype=np.float32), properties


def fused_case_probabilities(ensemble: Ensemble, predictors: Sequence, image_files: Sequence[Path], case: str,
                             image_shape: tuple[int, ...]) -> tuple[np.ndarray, dict]:
    """Every trainer's probabilities of ``case``, checked against the image shape, then fused."""
    probs, properties = [], None
    for trainer, predictor in zip(ensemble.trainers, predictors):
        p, properties = predict_probabilities(predictor, image_files)
        if p.shape[1:] != tuple(image_shape):
            raise ValueError(f"case {case}: {trainer} predicted {p.shape}, the image is {tuple(image_shape)}")
        check_probabilities(p, case, trainer)
        probs.append(p)
    return fuse_probabilities(probs, case, ensemble.weights, ensemble.trainers), properties
