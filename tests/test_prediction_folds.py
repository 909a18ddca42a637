"""``predict -f 0 1`` and ``--disable_tta`` with a tiny nnU-Net model trained on two folds of the phantom.

Known answers come from ``nnUNetv2_predict`` itself, one fold at a time: our fused probabilities must be
the mean of nnU-Net's per-fold probabilities, and ``--disable_tta`` must give nnU-Net's own
``--disable_tta`` output (which differs from the mirrored one)."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnunet_subprocess import run_checked
from nnunetv2_glrp.cli import main
from nnunetv2_glrp.environment import nnunet_command
from nnunetv2_glrp.postprocessing.prediction import RUN_RECORD

TRAINER = "NnunetControlTrainer_tiny"
#: nnU-Net stores probabilities as float32; the two paths differ only in worker scheduling
ATOL = 1e-4


def _run(args: list[str]) -> None:
    run_checked(args, timeout=900)


@pytest.fixture(scope="module")
def two_folds(phantom_preprocessed, phantom_raw_dataset, tmp_path_factory):
    config = phantom_preprocessed
    for fold in ("0", "1"):
        _run([nnunet_command("nnUNetv2_train"), "901", config, fold, "-tr", TRAINER, "-device", "cpu"])
    images = tmp_path_factory.mktemp("fold_images")
    source = sorted((Path(phantom_raw_dataset) / "imagesTs").glob("*_0000.nii.gz"))[0]
    shutil.copy(source, images / source.name)
    return config, images, source.name[: -len("_0000.nii.gz")]


@pytest.fixture(scope="module")
def nnunet_fold_probabilities(two_folds, tmp_path_factory):
    """``nnUNetv2_predict`` itself on each fold alone (with its default mirroring): the known answers of
    both tests below, predicted once."""
    config, images, case = two_folds
    out = tmp_path_factory.mktemp("nnunet_per_fold")
    for fold in ("0", "1"):
        _nnunet_predict(config, images, out / f"f{fold}", "-f", fold)
    return [_probabilities(out / f"f{fold}", case) for fold in ("0", "1")]


def _nnunet_predict(config, images, out, *extra):
    _run([nnunet_command("nnUNetv2_predict"), "-i", str(images), "-o", str(out), "-d", "901", "-c", config,
          "-tr", TRAINER, "--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1", *extra])


def _probabilities(folder, case):
    return np.load(Path(folder) / f"{case}.npz")["probabilities"].astype(np.float64)


def test_two_folds_fuse_to_the_mean_of_nnunets_per_fold_probabilities(two_folds, nnunet_fold_probabilities, tmp_path):
    config, images, case = two_folds
    per_fold = nnunet_fold_probabilities
    assert np.abs(per_fold[0] - per_fold[1]).max() > 1e-3  # two different models: the mean is a real check
    out = tmp_path / "ours"
    assert main(["predict", "-i", str(images), "-o", str(out), "-d", "901", "-c", config, "-f", "0", "1",
                 "-tr", TRAINER, "--crf", "off", "--save_probabilities", "-npp", "1", "-nps", "1"]) == 0
    fused = _probabilities(out, case)
    assert np.allclose(fused, (per_fold[0] + per_fold[1]) / 2, atol=ATOL)
    record = json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))
    assert record["fold"] == ["0", "1"] and record["disable_tta"] is False and record["step_size"] == 0.5
    in_process = tmp_path / "ours_in_process"  # no worker processes: the same probabilities
    assert main(["predict", "-i", str(images), "-o", str(in_process), "-d", "901", "-c", config, "-f", "0", "1",
                 "-tr", TRAINER, "--crf", "off", "--save_probabilities", "-npp", "0", "-nps", "0"]) == 0
    assert np.allclose(_probabilities(in_process, case), fused, atol=ATOL)


def test_disable_tta_is_nnunets_disable_tta(two_folds, nnunet_fold_probabilities, tmp_path):
    config, images, case = two_folds
    _nnunet_predict(config, images, tmp_path / "nnunet_notta", "-f", "0", "--disable_tta")
    tta, no_tta = nnunet_fold_probabilities[0], _probabilities(tmp_path / "nnunet_notta", case)
    assert np.abs(tta - no_tta).max() > 1e-4  # mirroring changes this model's output
    out = tmp_path / "ours"
    assert main(["predict", "-i", str(images), "-o", str(out), "-d", "901", "-c", config, "-f", "0", "-tr", TRAINER,
                 "--crf", "off", "--save_probabilities", "--disable_tta", "-npp", "1", "-nps", "1"]) == 0
    assert np.allclose(_probabilities(out, case), no_tta, atol=ATOL)
    assert json.loads((out / RUN_RECORD).read_text(encoding="utf-8"))["disable_tta"] is True


def test_a_damaged_checkpoint_and_an_unknown_trainer_are_named(two_folds, tmp_path, capsys):
    config, images, _ = two_folds
    from nnunetv2_glrp.postprocessing.trained_models import Ensemble, load_predictors

    model = f"{TRAINER}__nnUNetPlans__{config}"
    source = Path(os.environ["nnUNet_results"]) / "Dataset901_ACDC" / model
    copy = tmp_path / "results" / "Dataset901_ACDC" / model
    shutil.copytree(source, copy)
    checkpoint = copy / "fold_1" / "checkpoint_final.pth"
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(data[: len(data) // 2])
    ensemble = Ensemble("901", config, ("0", "1"), (TRAINER,), results_root=os.fspath(tmp_path / "results"))
    with pytest.raises(ValueError, match=rf"trainer {TRAINER} fold 1: checkpoint {re.escape(str(checkpoint))} "
                                         r"cannot be read: the file is corrupt or incomplete"):
        load_predictors(ensemble)
    assert main(["predict", "-i", str(images), "-o", str(tmp_path / "out"), "-d", "901", "-c", config,
                 "-tr", "NoSuchTrainer", "--crf", "off"]) == 2
    err = capsys.readouterr().err
    assert "unknown trainer NoSuchTrainer (no folder" in err and "train fold" not in err
