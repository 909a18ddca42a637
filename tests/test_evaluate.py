import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.evaluate import evaluate_folder


def _write(path, arr, spacing=(1.5, 1.5, 8.0)):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def test_evaluate_folder_writes_tables(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir(), pred_dir.mkdir()
    ref = np.zeros((3, 16, 16), np.uint8)
    ref[:, 2:6, 2:6] = 1
    ref[:, 8:12, 8:12] = 3
    ref[:, 7:13, 7:13][ref[:, 7:13, 7:13] == 0] = 2
    _write(ref_dir / "a.nii.gz", ref)
    _write(pred_dir / "a.nii.gz", ref)
    summary = evaluate_folder(pred_dir, ref_dir, out_dir=tmp_path / "eval")
    assert summary["mean_dice"] == pytest.approx(1.0)
    assert summary["mean_hd"] == pytest.approx(0.0)
    assert (tmp_path / "eval" / "metrics_per_case.csv").read_text().startswith("case,")
    assert json.loads((tmp_path / "eval" / "summary.json").read_text())["n_cases"] == 1


def test_missing_prediction_names_the_case(tmp_path):
    (tmp_path / "ref").mkdir(), (tmp_path / "pred").mkdir()
    _write(tmp_path / "ref" / "patient101_ED.nii.gz", np.zeros((2, 4, 4)))
    with pytest.raises(FileNotFoundError, match="patient101_ED"):
        evaluate_folder(tmp_path / "pred", tmp_path / "ref")


def test_empty_prediction_counts_as_infinite_distance(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir(), pred_dir.mkdir()
    ref = np.zeros((2, 12, 12), np.uint8)
    ref[:, 2:5, 2:5] = 1
    ref[:, 6:10, 6:10] = 3
    pred = ref.copy()
    pred[pred == 3] = 0  # LV missed entirely
    _write(ref_dir / "a.nii.gz", ref)
    _write(pred_dir / "a.nii.gz", pred)
    summary = evaluate_folder(pred_dir, ref_dir, labels={"RV": 1, "LV": 3})
    assert summary["classes"]["LV"]["hd"]["n_inf"] == 1
    assert summary["n_inf_hd"] == 1
    assert summary["mean_hd"] == pytest.approx(0.0)  # RV only: the finite class mean
    assert summary["mean_dice"] == pytest.approx(0.5)
