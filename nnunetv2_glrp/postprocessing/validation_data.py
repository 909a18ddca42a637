"""``determine-crf``: the fold's validation cases, their fused probabilities, the decision -> ``crf.json``.

One fold only (several are refused: a multi-fold model has no held-out cases). Predictions use nnU-Net's
default inference (step 0.5, mirroring), as nnU-Net's own validation exports do. Validation cases are fold ``F`` of ``nnUNet_preprocessed/DatasetX/splits_final.json``; images and
references come from ``nnUNet_raw/DatasetX/imagesTr`` and ``labelsTr``. A trainer's probabilities
are read from ``fold_F/validation/CASE.npz`` + ``.pkl`` (``nnUNetv2_train ... --val --npz``) where
they exist, otherwise the case is re-predicted with the trainer's checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from nnunetv2_glrp.postprocessing.fusion import fuse_probabilities
from nnunetv2_glrp.postprocessing.registration import (
    DEFAULT_CANDIDATES, ValidationCase, choose_setting, write_registration,
)
from nnunetv2_glrp.postprocessing.trained_models import Ensemble, load_predictors, predict_probabilities
from nnunetv2_glrp.postprocessing.volumes import case_image_files, read_image, read_probabilities


def _raw_folder(ensemble: Ensemble) -> Path:
    return Path(os.environ["nnUNet_raw"]) / ensemble.dataset_name


def evaluation_labels(dataset_json: dict) -> dict[str, int]:
    """Foreground classes of ``dataset.json`` (name -> label value); region-based labels are refused."""
    labels = {name: value for name, value in dataset_json["labels"].items() if name != "background"}
    if not all(isinstance(v, int) for v in labels.values()):
        raise ValueError(f"dataset.json labels {dataset_json['labels']}: region-based labels are not supported")
    return labels


def _refuse_several_folds(ensemble: Ensemble) -> None:
    if len(ensemble.folds) > 1:
        raise ValueError(f"determine-crf takes one fold, not -f {' '.join(ensemble.folds)}: a model of several folds "
                         "was trained on the other folds' validation cases, so no case is held out from it; choose "
                         "the setting on one fold (-f 0), predict -f 0 1 ... then uses that fold's crf.json")


def validation_case_names(ensemble: Ensemble) -> list[str]:
    splits = Path(os.environ["nnUNet_preprocessed"]) / ensemble.dataset_name / "splits_final.json"
    if not splits.is_file():
        raise FileNotFoundError(f"no {splits}: prepare the dataset (nnUNetv2_glrp prepare) or train once first")
    folds = json.loads(splits.read_text(encoding="utf-8"))
    _refuse_several_folds(ensemble)
    if not str(ensemble.fold).isdigit():
        raise ValueError(f"fold {ensemble.fold!r}: determine-crf needs a fold with validation cases (0, 1, ...)")
    fold = int(ensemble.fold)
    if not 0 <= fold < len(folds):
        raise ValueError(f"fold {fold} is not in {splits} ({len(folds)} folds)")
    return sorted(folds[fold]["val"])


def load_validation_cases(ensemble: Ensemble, device: str = "cpu") -> list[ValidationCase]:
    """Fused probabilities, image and reference of every validation case of the fold."""
    from nnunetv2_glrp.progress import tqdm

    raw = _raw_folder(ensemble)
    file_ending = json.loads((raw / "dataset.json").read_text(encoding="utf-8"))["file_ending"]
    predictors: list | None = None
    cases = []
    for case in tqdm(validation_case_names(ensemble), desc="validation cases", unit="case"):
        files = case_image_files(raw / "imagesTr", case, file_ending)
        image, geometry = read_image(files[0])
        reference_file = raw / "labelsTr" / f"{case}{file_ending}"
        reference, ref_geometry = read_image(reference_file)
        problem = (f"shape {reference.shape} vs {image.shape}" if reference.shape != image.shape
                   else ref_geometry.mismatch(geometry))
        if problem is not None:
            raise ValueError(f"case {case}: reference {reference_file} and image {files[0]} differ in {problem}")
        probs = []
        for i, trainer in enumerate(ensemble.trainers):
            exported = ensemble.fold_folder(trainer) / "validation"
            if (exported / f"{case}.npz").is_file():
                probs.append(read_probabilities(exported, case, image.shape, geometry))
                continue
            predictors = predictors or load_predictors(ensemble, device)
            p, _ = predict_probabilities(predictors[i][0], files)
            probs.append(p)
        fused = fuse_probabilities(probs, case, ensemble.weights, ensemble.trainers)
        if fused.shape[1:] != image.shape:
            raise ValueError(f"case {case}: probabilities {fused.shape} do not fit the image {image.shape}")
        cases.append(ValidationCase(case, fused, image, geometry.array_spacing, reference.astype(np.uint8)))
    return cases


def determine_crf(ensemble: Ensemble, device: str = "cpu", candidates=DEFAULT_CANDIDATES) -> dict:
    """Choose the post-processing on the fold's validation cases and write ``crf.json``; returns its content."""
    _refuse_several_folds(ensemble)
    ensemble.check_trained()
    validation_case_names(ensemble)  # a fold with validation cases, before anything is predicted
    labels = evaluation_labels(json.loads((_raw_folder(ensemble) / "dataset.json").read_text(encoding="utf-8")))
    cases = load_validation_cases(ensemble, device)
    decision = choose_setting(cases, labels, candidates, progress=True)
    context = {**ensemble.context(), "validation_cases": [c.name for c in cases]}
    write_registration(ensemble.registration_path, decision, context)
    return {**context, **decision}
