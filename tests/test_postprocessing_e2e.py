"""End to end on the phantom: two tiny trainers, determine-crf, fused predict with the registered CRF.

``RandomInitTrainer_k2_tiny`` is trained with ``--npz`` (determine-crf reads its validation exports),
``RandomInitTrainer_k6_tiny`` without (determine-crf re-predicts its validation cases). The reader of
nnU-Net's exports is checked against ``nnUNetv2_predict --save_probabilities`` itself.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnunet_subprocess import run_checked
from nnunetv2_glrp.cli import main
from nnunetv2_glrp.environment import nnunet_command
from nnunetv2_glrp.postprocessing.crf import postprocess
from nnunetv2_glrp.postprocessing.registration import DEFAULT_CANDIDATES, load_setting
from nnunetv2_glrp.postprocessing.volumes import read_image

DATASET = "Dataset901_ACDC"
TRAINERS = ("RandomInitTrainer_k2_tiny", "RandomInitTrainer_k6_tiny")


def _run(args: list[str]) -> None:
    run_checked(args, GLRP_TEST_FINAL_VALIDATION="1")  # determine-crf reads the --npz validation exports


@pytest.fixture(scope="module")
def two_models(phantom_preprocessed, phantom_raw_dataset, tmp_path_factory):
    config = phantom_preprocessed
    for trainer, extra in zip(TRAINERS, (["--npz"], [])):
        _run([nnunet_command("nnUNetv2_train"), "901", config, "0", "-tr", trainer, "-device", "cpu", *extra])
    images = tmp_path_factory.mktemp("test_images")
    for source in sorted((Path(phantom_raw_dataset) / "imagesTs").glob("*_0000.nii.gz"))[:2]:
        shutil.copy(source, images / source.name)
    return config, images


def _model_args(config: str, *trainers: str) -> list[str]:
    return ["-d", "901", "-c", config, "-f", "0", "-tr", *trainers, "-device", "cpu"]


def test_determine_crf_then_fused_predict_with_the_registered_crf(two_models, tmp_path):
    config, images = two_models
    fold_a = Path(os.environ["nnUNet_results"]) / DATASET / f"{TRAINERS[0]}__nnUNetPlans__{config}" / "fold_0"
    assert any((fold_a / "validation").glob("*.npz"))
    assert main(["determine-crf", *_model_args(config, *TRAINERS)]) == 0
    record = json.loads((fold_a / "crf.json").read_text())
    splits = json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET / "splits_final.json").read_text())
    assert record["validation_cases"] == sorted(splits[0]["val"]) and record["trainers"] == list(TRAINERS)
    assert len(record["candidates"]) == len(DEFAULT_CANDIDATES) and record["reason"]
    base = record["candidates"][0]
    chosen = next(c for c in record["candidates"] if c["setting"] == record["chosen"])
    assert chosen is base or (chosen["mean_dice"] > base["mean_dice"] and chosen["mean_hd95"] <= base["mean_hd95"])
    setting = load_setting(fold_a / "crf.json", TRAINERS)

    out = tmp_path / "fused"
    assert main(["predict", "-i", str(images), "-o", str(out), *_model_args(config, *TRAINERS), "--crf", "auto",
                 "--save_probabilities"]) == 0
    single = tmp_path / "single_b"
    assert main(["predict", "-i", str(images), "-o", str(single), *_model_args(config, TRAINERS[1]), "--crf", "off",
                 "--save_probabilities"]) == 0
    nnunet_a = tmp_path / "nnunet_a"
    _run([nnunet_command("nnUNetv2_predict"), "-i", str(images), "-o", str(nnunet_a), "-d", "901", "-c", config,
          "-f", "0", "-tr", TRAINERS[0], "--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1"])
    cases = sorted(p.name[: -len("_0000.nii.gz")] for p in images.iterdir())
    for case in cases:
        image, geometry = read_image(images / f"{case}_0000.nii.gz")
        labels, out_geometry = read_image(out / f"{case}.nii.gz")
        assert out_geometry == geometry and labels.shape == image.shape
        fused = np.load(out / f"{case}.npz")["probabilities"]
        a = np.load(nnunet_a / f"{case}.npz")["probabilities"]  # nnU-Net's own export: same axis order as ours
        b = np.load(single / f"{case}.npz")["probabilities"]
        assert np.allclose(fused, (a + b) / 2, atol=2e-3)
        assert np.array_equal(labels, postprocess(fused, image, geometry.array_spacing, setting))

    # the crf subcommand on nnU-Net's own export, with the registered setting
    crf_out = tmp_path / "crf_a"
    assert main(["crf", "-i", str(nnunet_a), "-images", str(images), "-o", str(crf_out),
                 "--setting", str(fold_a / "crf.json")]) == 0
    for case in cases:
        image, geometry = read_image(images / f"{case}_0000.nii.gz")
        a = np.load(nnunet_a / f"{case}.npz")["probabilities"].astype(np.float32)
        assert np.array_equal(read_image(crf_out / f"{case}.nii.gz")[0],
                              postprocess(a, image, geometry.array_spacing, setting))
