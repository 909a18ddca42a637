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
from nnunetv2_glrp.torch_files import CORRUPT_FILE_ERRORS, load_torch_file


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


def _normalise_folds(fold) -> str | tuple[str, ...]:
    """``"0"`` / ``0`` / ``("0",)`` -> ``"0"``; several folds -> a tuple of str (order kept, duplicates refused)."""
    folds = (fold,) if isinstance(fold, (str, int)) else tuple(fold)
    folds = tuple(str(f) for f in folds)
    if not folds:
        raise ValueError("name at least one fold (-f)")
    duplicates = sorted({f for f in folds if folds.count(f) > 1})
    if duplicates:
        raise ValueError(f"fold {', '.join(duplicates)} given twice (-f {' '.join(folds)})")
    for f in folds:
        if f != "all" and not f.isdigit():
            raise ValueError(f"fold {f!r}: folds are 0, 1, ... or all (as in nnUNetv2_predict -f)")
    return folds[0] if len(folds) == 1 else folds


@dataclass(frozen=True)
class Ensemble:
    """Trainers of one dataset / plans / configuration whose probabilities are averaged.

    ``fold`` is one fold (``"0"``) or several (``("0", "1", ...)``, like ``nnUNetv2_predict -f 0 1``):
    each trainer's folds are averaged with equal weights, then the trainers are fused with ``weights``."""

    dataset: str
    configuration: str
    fold: str | tuple[str, ...]
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
        object.__setattr__(self, "fold", _normalise_folds(self.fold))

    @property
    def folds(self) -> tuple[str, ...]:
        return (self.fold,) if isinstance(self.fold, str) else self.fold

    @property
    def dataset_name(self) -> str:
        from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

        return maybe_convert_to_dataset_name(self.dataset)

    def fold_folder(self, trainer: str, fold: str | None = None) -> Path:
        """The folder of ``fold`` (default: the first fold) of ``trainer``."""
        fold = self.folds[0] if fold is None else fold
        return model_folder(self.results_root, self.dataset_name, trainer, self.plans, self.configuration, fold)

    @property
    def registration_path(self) -> Path:
        """``crf.json`` lives in the first trainer's (first) fold folder."""
        return self.fold_folder(self.trainers[0]) / REGISTRATION_FILE

    def check_trained(self) -> None:
        for trainer in self.trainers:
            model = self.fold_folder(trainer).parent
            if not model.is_dir():
                raise FileNotFoundError(
                    f"unknown trainer {trainer} (no folder {model}): check -tr, -c {self.configuration} "
                    f"and -p {self.plans}, or train it first")
            for fold in self.folds:
                checkpoint = self.fold_folder(trainer, fold) / self.checkpoint
                if not checkpoint.is_file():
                    raise FileNotFoundError(f"trainer {trainer}: no checkpoint {checkpoint} (train fold {fold} first)")

    def context(self) -> dict:
        return {"dataset": self.dataset_name, "configuration": self.configuration,
                "fold": self.fold if isinstance(self.fold, str) else list(self.fold),
                "plans": self.plans, "checkpoint": self.checkpoint, "trainers": list(self.trainers),
                "weights": list(self.weights) if self.weights else None,
                **({"results_root": self.results_root} if self.results_root is not None else {})}


@dataclass(frozen=True)
class Inference:
    """nnU-Net's inference settings, as ``nnUNetv2_predict`` spells them: ``-step_size``, ``--disable_tta``
    (``use_mirroring`` False), ``-npp`` preprocessing and ``-nps`` resampling workers (3 each in the CLI, as
    nnU-Net). ``npp = nps = 0`` (the library default, which the demo and the run engine use) predicts in
    this process, one case at a time, without starting worker processes; the probabilities are the same."""

    step_size: float = 0.5
    use_mirroring: bool = True
    npp: int = 0
    nps: int = 0

    def __post_init__(self):
        if not 0 < self.step_size <= 1:
            raise ValueError(f"-step_size {self.step_size}: must be in (0, 1] (nnU-Net's default 0.5)")
        if self.npp < 0 or self.nps < 0 or (self.npp == 0) != (self.nps == 0):
            raise ValueError(f"-npp {self.npp} / -nps {self.nps}: give both at least 1 (nnU-Net's worker "
                             "processes), or both 0 (no workers: predict in this process)")

    @property
    def in_process(self) -> bool:
        return self.npp == 0

    def outputs(self) -> dict:
        """The settings that change the probabilities (the worker counts do not)."""
        return {"step_size": self.step_size, "disable_tta": not self.use_mirroring}

    def workers(self) -> dict:
        return {"npp": self.npp, "nps": self.nps}


def load_predictors(ensemble: Ensemble, device: str = "cpu", inference: Inference = Inference()) -> list[list]:
    """Initialised ``nnUNetPredictor`` s: one list per trainer, one predictor per fold (nnU-Net's Gaussian
    weighting; step size and mirroring from ``inference``)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    ensemble.check_trained()
    predictors = []
    for trainer in ensemble.trainers:
        per_fold = []
        for fold in ensemble.folds:
            predictor = nnUNetPredictor(tile_step_size=inference.step_size, use_mirroring=inference.use_mirroring,
                                        device=torch.device(device), perform_everything_on_device=device == "cuda",
                                        allow_tqdm=False)
            checkpoint = ensemble.fold_folder(trainer, fold) / ensemble.checkpoint
            try:
                predictor.initialize_from_trained_model_folder(os.fspath(checkpoint.parent.parent), (fold,),
                                                               ensemble.checkpoint)
            except CORRUPT_FILE_ERRORS as exc:
                load_torch_file(checkpoint, f"trainer {trainer} fold {fold}: checkpoint")  # names a damaged file
                raise exc
            per_fold.append(predictor)
        predictors.append(per_fold)
    return predictors


def predict_probabilities(predictor, image_files: Sequence[Path]) -> tuple[np.ndarray, dict]:
    """Probabilities (C, z, y, x) of one case and nnU-Net's properties of its image (no worker processes)."""
    reader = predictor.plans_manager.image_reader_writer_class()
    data, properties = reader.read_images([os.fspath(f) for f in image_files])
    _, probs = predictor.predict_single_npy_array(data, properties, None, None, True)
    return np.asarray(probs, dtype=np.float32), properties


def predict_batch(predictor, cases_files: Sequence[Sequence[Path]], inference: Inference = Inference()
                  ) -> list[tuple[np.ndarray, dict]]:
    """Probabilities (C, z, y, x) and properties of several cases through nnU-Net's worker pipeline
    (``predict_from_list_of_npy_arrays``: ``npp`` preprocessing, ``nps`` resampling workers), or one by one
    in this process when ``inference.in_process``."""
    import contextlib
    import io

    if inference.in_process:
        return [predict_probabilities(predictor, files) for files in cases_files]
    reader = predictor.plans_manager.image_reader_writer_class()
    images, properties = [], []
    for files in cases_files:
        data, props = reader.read_images([os.fspath(f) for f in files])
        images.append(data)
        properties.append(props)
    with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net prints several lines per case
        results = predictor.predict_from_list_of_npy_arrays(
            images, None, properties, [None] * len(images), num_processes=inference.npp, save_probabilities=True,
            num_processes_segmentation_export=inference.nps)
    return [(np.asarray(r[1], dtype=np.float32), p) for r, p in zip(results, properties)]


def fused_batch_probabilities(ensemble: Ensemble, predictors: Sequence[Sequence], cases_files: dict[str, list[Path]],
                              image_shapes: dict[str, tuple[int, ...]], inference: Inference = Inference()
                              ) -> dict[str, tuple[np.ndarray, dict]]:
    """Fused probabilities and properties of every case of ``cases_files`` (case -> image files).

    Each trainer's folds are checked against the image shape and averaged with equal weights, then the
    trainers are fused with the ensemble's weights (nnU-Net's own ensembling averages probabilities too)."""
    cases = list(cases_files)
    per_trainer: dict[str, list[np.ndarray]] = {case: [] for case in cases}
    properties: dict[str, dict] = {}
    for trainer, fold_predictors in zip(ensemble.trainers, predictors):
        sums: dict[str, np.ndarray] = {}
        for fold, predictor in zip(ensemble.folds, fold_predictors):
            source = trainer if len(ensemble.folds) == 1 else f"{trainer} fold {fold}"
            results = predict_batch(predictor, [cases_files[c] for c in cases], inference)
            for case, (p, props) in zip(cases, results):
                if p.shape[1:] != tuple(image_shapes[case]):
                    raise ValueError(f"case {case}: {source} predicted {p.shape}, the image is "
                                     f"{tuple(image_shapes[case])}")
                check_probabilities(p, case, source)
                sums[case] = p.astype(np.float64) if case not in sums else sums[case] + p
                properties[case] = props
        for case in cases:
            per_trainer[case].append((sums[case] / len(ensemble.folds)).astype(np.float32))
    return {case: (fuse_probabilities(per_trainer[case], case, ensemble.weights, ensemble.trainers), properties[case])
            for case in cases}
