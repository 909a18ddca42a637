"""Unlabeled cine frames are preprocessed exactly like nnU-Net's labeled cases, resumably."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from test_plans import plan_tiny_dataset

from nnunetv2_glrp.preparation.overlays import apply_plans_overlay
from nnunetv2_glrp.preparation.unlabeled import (INCOMPLETE, list_unlabeled_cases, preprocess_unlabeled,
                                                 unlabeled_folder)

DATASET_ID = 954


@pytest.fixture(scope="module")
def preprocessed_tiny() -> tuple[Path, Path]:
    """(nnU-Net's labeled paper_unet_cpu folder, our unlabeled folder) of a tiny dataset whose t00 frames are the ED images."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess_dataset

    plans_file = plan_tiny_dataset(DATASET_ID)
    apply_plans_overlay(DATASET_ID, "paper_unet_cpu")
    preprocess_dataset(DATASET_ID, "nnUNetPlans", ["paper_unet_cpu"], [1], show_progress_bar=False)
    unlabeled = preprocess_unlabeled(DATASET_ID, "paper_unet_cpu")
    return plans_file.parent / "nnUNetPlans_paper_unet_cpu", unlabeled


def test_unlabeled_frames_equal_nnunet_preprocessing_of_the_same_image(preprocessed_tiny):
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    labeled_folder, unlabeled = preprocessed_tiny
    assert unlabeled == unlabeled_folder(DATASET_ID, "paper_unet_cpu")
    assert unlabeled.name == "nnUNetPlans_paper_unet_cpu_unlabeled"
    labeled = nnUNetDatasetBlosc2(os.fspath(labeled_folder))
    frames = nnUNetDatasetBlosc2(os.fspath(unlabeled))  # nnU-Net's own reader accepts the folder
    assert len(frames.identifiers) == 9
    for patient in (1, 2, 3):
        for frame, phase in (("t00", "ED"), ("t02", "ES")):
            data_u, seg_u, _, props_u = frames.load_case(f"patient{patient:03d}_{frame}")
            data_l, _, _, props_l = labeled.load_case(f"patient{patient:03d}_{phase}")
            np.testing.assert_array_equal(data_u[:], data_l[:])
            assert data_u.dtype == data_l.dtype == np.float32
            for key in ("spacing", "bbox_used_for_cropping", "shape_before_cropping",
                        "shape_after_cropping_and_before_resampling"):
                np.testing.assert_array_equal(np.asarray(props_u[key]), np.asarray(props_l[key]), err_msg=key)
            assert "class_locations" not in props_u  # no label was read
            assert set(np.unique(seg_u[:])) <= {-1, 0}  # the nonzero mask, not a segmentation
    # a different frame of the same patient is a different image
    other, _, _, _ = frames.load_case("patient001_t01")
    assert not np.array_equal(other[:], labeled.load_case("patient001_ED")[0][:])


def test_a_killed_run_resumes_only_the_missing_case(preprocessed_tiny, tmp_path, caplog):
    _, reference = preprocessed_tiny
    out = tmp_path / "unlabeled"
    preprocess_unlabeled(DATASET_ID, "paper_unet_cpu", output_folder=out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    assert len(stamps) == 27
    (out / "patient002_t01.pkl").unlink()  # killed between moving the arrays and the .pkl
    (out / INCOMPLETE).mkdir()
    (out / INCOMPLETE / "patient003_t00.b2nd").write_bytes(b"half written")
    caplog.set_level("INFO", logger="nnunetv2_glrp.preparation.unlabeled")
    preprocess_unlabeled(DATASET_ID, "paper_unet_cpu", output_folder=out)
    assert "8 already done, 1 to preprocess" in caplog.text
    after = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.is_file()}
    assert set(after) == set(stamps) and not (out / INCOMPLETE).exists()
    redone = {name for name in after if after[name] != stamps.get(name)}
    assert redone == {"patient002_t01.b2nd", "patient002_t01_seg.b2nd", "patient002_t01.pkl"}
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    again = nnUNetDatasetBlosc2(os.fspath(out)).load_case("patient002_t01")[0][:]
    np.testing.assert_array_equal(again, nnUNetDatasetBlosc2(os.fspath(reference)).load_case("patient002_t01")[0][:])


def test_output_of_other_plans_is_rebuilt(preprocessed_tiny, tmp_path):
    out = tmp_path / "unlabeled"
    preprocess_unlabeled(DATASET_ID, "paper_unet_cpu", output_folder=out)
    record = out.parent / f"glrp_preprocessing_{out.name}.json"
    assert json.loads(record.read_text())["n_cases"] == 9
    record.write_text(json.dumps({"fingerprint": "from other plans"}))
    stamp = (out / "patient001_t00.b2nd").stat().st_mtime_ns
    preprocess_unlabeled(DATASET_ID, "paper_unet_cpu", output_folder=out)
    assert (out / "patient001_t00.b2nd").stat().st_mtime_ns != stamp
    assert json.loads(record.read_text())["fingerprint"] != "from other plans"


def test_bad_unlabeled_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="unlabeledTr"):
        list_unlabeled_cases(tmp_path, ".nii.gz", 1)
    (tmp_path / "unlabeledTr").mkdir()
    (tmp_path / "unlabeledTr" / "patient001_t00_0001.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="patient001_t00.*channels"):
        list_unlabeled_cases(tmp_path, ".nii.gz", 1)
    (tmp_path / "unlabeledTr" / "patient001_t00_0001.nii.gz").unlink()
    (tmp_path / "unlabeledTr" / "frame.nii.gz").write_bytes(b"")
    with pytest.raises(ValueError, match="frame.nii.gz"):
        list_unlabeled_cases(tmp_path, ".nii.gz", 1)



def test_cases_that_left_unlabeled_tr_are_deleted(preprocessed_tiny, tmp_path, caplog):
    out = tmp_path / "unlabeled"
    preprocess_unlabeled(DATASET_ID, "paper_unet_cpu", output_folder=out)
    source = Path(os.environ["nnUNet_raw"]) / "Dataset954_TINY" / "unlabeledTr" / "patient003_t01_0000.nii.gz"
    parked = tmp_path / source.name
    shutil.move(source, parked)
    try:
        caplog.set_level("INFO", logger="nnunetv2_glrp.preparation.unlabeled")
        preprocess_unlabeled(DATASET_ID, "paper_unet_cpu", output_folder=out)
    finally:
        shutil.move(parked, source)
    assert "8 unlabeled cases, 8 already done, 0 to preprocess" in caplog.text
    assert not [p for p in out.iterdir() if p.name.startswith("patient003_t01")]
    record = json.loads((tmp_path / "glrp_preprocessing_unlabeled.json").read_text())
    expected = sorted(f"patient{p:03d}_t{t:02d}" for p in (1, 2, 3) for t in range(3) if (p, t) != (3, 1))
    assert record["cases"] == expected and record["n_cases"] == 8
    assert record["glrp_split_sha256"] is None  # the tiny dataset has no glrp_split.json
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    assert sorted(nnUNetDatasetBlosc2(os.fspath(out)).identifiers) == expected
    # back in unlabeledTr: preprocessed again, the others are kept
    preprocess_unlabeled(DATASET_ID, "paper_unet_cpu", output_folder=out)
    assert len(list(out.glob("*.pkl"))) == 9 and "8 already done, 1 to preprocess" in caplog.text


def test_preprocess_unlabeled_command(preprocessed_tiny, capsys):
    from nnunetv2_glrp.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["preprocess-unlabeled", "-h"])
    assert exit_info.value.code == 0
    assert "--configuration" in capsys.readouterr().out

    _, folder = preprocessed_tiny
    for path in folder.glob("patient002_t02*"):
        path.unlink()
    stamp = (folder / "patient001_t00.b2nd").stat().st_mtime_ns
    assert main(["preprocess-unlabeled", "-d", str(DATASET_ID), "-c", "paper_unet_cpu", "-np", "1"]) == 0
    assert f"9 unlabeled cases preprocessed with nnUNetPlans/paper_unet_cpu in {folder}" in capsys.readouterr().out
    assert (folder / "patient002_t02.pkl").is_file()
    assert (folder / "patient001_t00.b2nd").stat().st_mtime_ns == stamp  # done cases are not redone

    assert main(["preprocess-unlabeled", "-d", str(DATASET_ID), "-c", "no_such_configuration"]) == 2
    assert "no_such_configuration" in capsys.readouterr().err
