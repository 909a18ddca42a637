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


def _pair(tmp_path, n_cases=1):
    """ref/ and pred/ with identical label maps a.nii.gz, b.nii.gz, ...; returns (pred_dir, ref_dir, ref array)."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir(), pred_dir.mkdir()
    ref = np.zeros((3, 16, 16), np.uint8)
    ref[:, 2:6, 2:6] = 1
    ref[:, 8:12, 8:12] = 3
    for name in "abcdefgh"[:n_cases]:
        _write(ref_dir / f"{name}.nii.gz", ref)
        _write(pred_dir / f"{name}.nii.gz", ref)
    return pred_dir, ref_dir, ref


def test_truncated_prediction_is_an_error_naming_it(tmp_path):
    pred_dir, ref_dir, _ = _pair(tmp_path)
    data = (pred_dir / "a.nii.gz").read_bytes()
    (pred_dir / "a.nii.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"pred/a.nii.gz: .*incomplete"):
        evaluate_folder(pred_dir, ref_dir)


@pytest.mark.parametrize("geometry, problem", [({"Origin": (0.0, 0.0, 5.0)}, "origin"),
                                               ({"Direction": (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0)},
                                                "direction"),
                                               ({"Spacing": (1.5, 1.5, 10.0)}, "spacing")])
def test_prediction_on_another_grid_is_an_error(tmp_path, geometry, problem):
    pred_dir, ref_dir, ref = _pair(tmp_path)
    image = sitk.GetImageFromArray(ref)
    image.SetSpacing((1.5, 1.5, 8.0))
    for key, value in geometry.items():
        getattr(image, f"Set{key}")(value)
    sitk.WriteImage(image, str(pred_dir / "a.nii.gz"))
    with pytest.raises(ValueError, match=f"case a.nii.gz: prediction and reference differ in {problem}"):
        evaluate_folder(pred_dir, ref_dir)


def test_label_values_outside_the_labels_and_float_labels_are_errors(tmp_path):
    pred_dir, ref_dir, ref = _pair(tmp_path)
    bad = ref.copy()
    bad[0, 0, 0] = 5
    _write(pred_dir / "a.nii.gz", bad)
    with pytest.raises(ValueError, match=r"pred/a.nii.gz: label values \[5\] are not background or one of"):
        evaluate_folder(pred_dir, ref_dir)
    floats = sitk.GetImageFromArray(ref.astype(np.float32) * 0.5)
    floats.SetSpacing((1.5, 1.5, 8.0))
    sitk.WriteImage(floats, str(pred_dir / "a.nii.gz"))
    with pytest.raises(ValueError, match="pred/a.nii.gz: voxels are float32, a label map must have an integer"):
        evaluate_folder(pred_dir, ref_dir)


def test_every_missing_case_is_listed(tmp_path):
    pred_dir, ref_dir, _ = _pair(tmp_path, n_cases=4)
    (pred_dir / "b.nii.gz").unlink(), (pred_dir / "d.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match="2 of 4 cases have no prediction in .*: b.nii.gz, d.nii.gz"):
        evaluate_folder(pred_dir, ref_dir)


def test_cli_prints_infinite_counts_and_refuses_a_file_for_a_folder(tmp_path, capsys):
    from nnunetv2_glrp.cli import main

    pred_dir, ref_dir, ref = _pair(tmp_path)
    pred = ref.copy()
    pred[pred == 3] = 0  # LV missed
    _write(pred_dir / "a.nii.gz", pred)
    assert main(["evaluate", str(pred_dir), str(ref_dir)]) == 0
    out = capsys.readouterr().out
    assert "mean_hd 0.000 mm (+ 1 infinite, not in the mean" in out
    assert "LV nan mm (n=0, 1 infinite)" in out
    assert main(["evaluate", str(pred_dir / "a.nii.gz"), str(ref_dir)]) == 2
    err = capsys.readouterr().err
    assert "error: prediction folder" in err and "a.nii.gz is a file; expected a folder" in err
    assert "Traceback" not in err


def _phases(tmp_path):
    """ref/ and pred/ with p1_ED, p1_ES, p2_ED, p2_ES; the ES predictions are worse than the ED ones."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir(), pred_dir.mkdir()
    for i, patient in enumerate(("p1", "p2")):
        for phase, shift in (("ED", 0), ("ES", 2)):
            ref = np.zeros((3, 20, 20), np.uint8)
            ref[:, 2:7, 2:7] = 1
            ref[:, 9:16, 9:16] = 2
            ref[:, 10 + i:15, 10:15 - i] = 3
            pred = ref.copy()
            pred[:, :, :] = np.roll(ref, shift + i, axis=2)
            _write(ref_dir / f"{patient}_{phase}.nii.gz", ref)
            _write(pred_dir / f"{patient}_{phase}.nii.gz", pred)
    return pred_dir, ref_dir


def test_ed_es_split_equals_evaluating_each_phase_alone(tmp_path):
    pred_dir, ref_dir = _phases(tmp_path)
    summary = evaluate_folder(pred_dir, ref_dir)
    for phase in ("ED", "ES"):
        alone = tmp_path / phase
        for kind in ("ref", "pred"):
            (alone / kind).mkdir(parents=True)
            for p in (tmp_path / kind).glob(f"*_{phase}.nii.gz"):
                (alone / kind / p.name).write_bytes(p.read_bytes())
        expected = evaluate_folder(alone / "pred", alone / "ref")
        got = summary["phases"][phase]
        assert got["n_cases"] == 2
        assert got == {k: v for k, v in expected.items() if k not in ("phases", "clinical", "extra_predictions")}
    assert summary["phases"]["ED"]["mean_dice"] != summary["phases"]["ES"]["mean_dice"]
    assert summary["mean_dice"] == pytest.approx(np.mean([summary["phases"][p]["classes"][c]["dice"]["mean"]
                                                          for p in ("ED", "ES") for c in ("RV", "MYO", "LV")]))


def test_extra_predictions_are_listed_and_numbers_print_as_plain_floats(tmp_path, capsys):
    from nnunetv2_glrp.cli import main

    pred_dir, ref_dir, ref = _pair(tmp_path, n_cases=2)
    _write(pred_dir / "zz_stray.nii.gz", ref)
    (pred_dir / "notes.txt").write_text("not a label map", encoding="utf-8")
    assert main(["evaluate", str(pred_dir), str(ref_dir), "-o", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    assert "note: 1 prediction file(s) without a reference, not scored: zz_stray.nii.gz" in out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))
    assert summary["extra_predictions"] == ["zz_stray.nii.gz"] and summary["n_cases"] == 2
    assert "np.float64" not in out and "np.int" not in out
    fresh = evaluate_folder(pred_dir, ref_dir)
    assert "np." not in repr(fresh)  # every recorded number is a Python int / float


def test_dataset_json_without_integer_labels_is_an_error_naming_it(tmp_path):
    from nnunetv2_glrp.evaluate import labels_from_dataset_json

    path = tmp_path / "dataset.json"
    path.write_text(json.dumps({"labels": {"background": 0, "heart": [1, 2]}}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"dataset.json: region-based labels"):
        labels_from_dataset_json(path)
    path.write_text(json.dumps({"name": "x"}), encoding="utf-8")
    with pytest.raises(ValueError, match=r"dataset.json: no 'labels' mapping"):
        labels_from_dataset_json(path)
