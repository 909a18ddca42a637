"""``crf`` and ``predict`` on synthetic folders: output geometry, resume, and every bad input leaves OUT clean.

``predict`` runs with stand-in predictors (monkeypatched) so that its own logic is tested in seconds;
tests/test_postprocessing_e2e.py runs it with trained nnU-Net models."""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.cli import main
from nnunetv2_glrp.postprocessing import prediction, trained_models
from nnunetv2_glrp.postprocessing.crf import NO_CRF, PAPER_SETTING, postprocess
from nnunetv2_glrp.postprocessing.trained_models import Ensemble, Inference
from nnunetv2_glrp.postprocessing.volumes import read_image, write_probabilities

SHAPE = (2, 24, 20)
SPACING_XYZ = (1.5, 1.25, 8.0)


def _probs(seed: int, classes: int = 4, shape=SHAPE) -> np.ndarray:
    e = np.exp(3 * np.random.default_rng(seed).normal(size=(classes, *shape)))
    return (e / e.sum(0)).astype(np.float32)


def _write_case(folder, case, seed, origin=(0.0, 0.0, 0.0), shape=SHAPE):
    folder.mkdir(exist_ok=True)
    image = sitk.GetImageFromArray(np.random.default_rng(seed).normal(100, 20, shape).astype(np.float32))
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(folder / f"{case}_0000.nii.gz"))
    return read_image(folder / f"{case}_0000.nii.gz")


@pytest.fixture
def exports(tmp_path):
    """Two cases: images and nnU-Net-style probability exports (.npz + .pkl)."""
    images, probs = tmp_path / "images", tmp_path / "probs"
    probs.mkdir()
    for i, case in enumerate(["c1", "c2"]):
        _, geometry = _write_case(images, case, i)
        write_probabilities(probs, case, _probs(i), {"sitk_stuff": asdict(geometry)})
    return images, probs, tmp_path / "out"


def test_crf_writes_label_maps_with_the_input_geometry_and_resumes(exports):
    images, probs, out = exports
    assert main(["crf", "-i", str(probs), "-images", str(images), "-o", str(out)]) == 0
    for i, case in enumerate(["c1", "c2"]):
        labels, geometry = read_image(out / f"{case}.nii.gz")
        image, image_geometry = read_image(images / f"{case}_0000.nii.gz")
        assert geometry == image_geometry and labels.shape == image.shape
        assert np.array_equal(labels, postprocess(_probs(i), image, image_geometry.array_spacing, PAPER_SETTING))
    (out / "c2.nii.gz").unlink()
    stamp = (out / "c1.nii.gz").stat().st_mtime_ns
    assert prediction.crf_folder(probs, images, out, PAPER_SETTING) == ["c2"]  # only the missing case
    assert (out / "c1.nii.gz").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="holds a run with other settings"):
        prediction.crf_folder(probs, images, out, NO_CRF)


def _corrupt_npz(probs_dir, case, change):
    p = _probs(1)
    change(p)
    np.savez_compressed(probs_dir / f"{case}.npz", probabilities=p)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # what an interrupted copy leaves


@pytest.mark.parametrize("corrupt, message", [
    (lambda img, pr: (pr / "c2.npz").unlink(), r"case c2: missing .*c2\.npz"),
    (lambda img, pr: _write_case(img, "c2", 1, origin=(0.0, 0.0, 40.0)),
     r"case c2: geometry of .*c2\.pkl differs from its image .*c2_0000\.nii\.gz \(origin"),
    (lambda img, pr: _truncate(img / "c2_0000.nii.gz"), r"c2_0000\.nii\.gz: .*the file is incomplete"),
    (lambda img, pr: _write_case(img, "c2", 1, shape=(2, 24, 21)), r"case c2: probabilities \(4, 2, 24, 20\)"),
    (lambda img, pr: _corrupt_npz(pr, "c2", lambda p: p.__setitem__((0, 0, 0, 0), np.inf)), "case c2.*non-finite"),
    (lambda img, pr: _corrupt_npz(pr, "c2", lambda p: p.__setitem__((slice(0, 2), 0, 0, 0), [-0.2, 1.2])),
     "case c2.*negative"),
    (lambda img, pr: _corrupt_npz(pr, "c2", lambda p: p.__imul__(1.1)), "case c2.*do not sum to 1"),
])
def test_crf_bad_input_is_a_clear_error_and_out_stays_clean(exports, corrupt, message, capsys):
    images, probs, out = exports
    (images / "c1_0000.nii.gz").unlink()  # c2 alone: its error must come before anything is written
    corrupt(images, probs)
    assert main(["crf", "-i", str(probs), "-images", str(images), "-o", str(out)]) == 2
    assert re.search(message, capsys.readouterr().err)
    assert not out.exists()


class _FakePredictor:
    def __init__(self, probs_by_case):
        self.probs_by_case = probs_by_case


@pytest.fixture
def fake_models(monkeypatch, tmp_path):
    """predict_folder with stand-in predictors: trainer name (or "trainer/fold") -> case -> probabilities.

    A trainer's fold uses the table entry "trainer/fold" when there is one, else the trainer's entry."""
    table: dict[str, dict[str, np.ndarray]] = {}
    monkeypatch.setattr(Ensemble, "check_trained", lambda self: None)
    monkeypatch.setattr(prediction, "load_predictors", lambda ensemble, device, inference: [
        [_FakePredictor(table.get(f"{t}/{f}", table.get(t))) for f in ensemble.folds] for t in ensemble.trainers])
    monkeypatch.setattr(trained_models, "predict_batch", lambda predictor, cases_files, inference: [
        (predictor.probs_by_case[files[0].name[:-len("_0000.nii.gz")]], {"note": "fake"}) for files in cases_files])
    return table


def _ensemble(*trainers, fold="0", weights=None):
    return Ensemble("Dataset999_Fake", "2d", fold, tuple(trainers), weights=weights)


def test_predict_fuses_and_writes_with_the_input_geometry(fake_models, tmp_path):
    images = tmp_path / "images"
    image, geometry = _write_case(images, "c1", 0, origin=(3.0, -2.0, 5.0))
    fake_models.update(A={"c1": _probs(1)}, B={"c1": _probs(2)})
    out = tmp_path / "out"
    assert prediction.predict_folder(images, out, _ensemble("A", "B"), crf="off", save_probabilities=True) == ["c1"]
    labels, out_geometry = read_image(out / "c1.nii.gz")
    assert out_geometry == geometry
    mean = (_probs(1) + _probs(2)) / 2
    assert np.array_equal(labels, mean.argmax(0))
    assert np.allclose(np.load(out / "c1.npz")["probabilities"], mean, atol=1e-6)
    assert prediction.predict_folder(images, out, _ensemble("A", "B"), crf="off", save_probabilities=True) == []


@pytest.mark.parametrize("b_probs, message", [
    (_probs(2, classes=3), r"case c1: B has 3 classes, A has 4"),
    (_probs(2, shape=(2, 24, 21)), r"case c1: B predicted \(4, 2, 24, 21\), the image is \(2, 24, 20\)"),
    (_probs(2) * 0.5, r"case c1 \(B\): probabilities do not sum to 1"),
])
def test_predict_bad_models_leave_out_clean(fake_models, tmp_path, b_probs, message):
    images = tmp_path / "images"
    _write_case(images, "c1", 0)
    fake_models.update(A={"c1": _probs(1)}, B={"c1": b_probs})
    with pytest.raises(ValueError, match=message):
        prediction.predict_folder(images, tmp_path / "out", _ensemble("A", "B"), crf="on")
    assert not (tmp_path / "out").exists()


def test_predict_auto_needs_a_registration(fake_models, tmp_path):
    images = tmp_path / "images"
    _write_case(images, "c1", 0)
    with pytest.raises(FileNotFoundError, match="run nnUNetv2_glrp determine-crf first"):
        prediction.predict_folder(images, tmp_path / "out", _ensemble("A"), crf="auto")
    with pytest.raises(FileNotFoundError, match="no images named CASE_0000"):
        prediction.predict_folder(tmp_path, tmp_path / "out", _ensemble("A"), crf="off")
    assert not (tmp_path / "out").exists()


def test_predict_averages_each_trainers_folds_then_fuses_the_trainers_with_the_weights(fake_models, tmp_path):
    images = tmp_path / "images"
    _write_case(images, "c1", 0)
    fake_models.update({"A/0": {"c1": _probs(1)}, "A/1": {"c1": _probs(2)}, "B/0": {"c1": _probs(3)},
                        "B/1": {"c1": _probs(4)}})
    out = tmp_path / "out"
    ensemble = _ensemble("A", "B", fold=("0", "1"), weights=(1.0, 3.0))
    assert prediction.predict_folder(images, out, ensemble, crf="off", save_probabilities=True) == ["c1"]
    a, b = (_probs(1) + _probs(2)) / 2, (_probs(3) + _probs(4)) / 2
    expected = (1 * a + 3 * b) / 4  # weights across trainers, each trainer's folds equal
    assert np.allclose(np.load(out / "c1.npz")["probabilities"], expected, atol=1e-6)
    record = json.loads((out / prediction.RUN_RECORD).read_text(encoding="utf-8"))
    assert record["fold"] == ["0", "1"] and record["weights"] == [1.0, 3.0]
    assert record["step_size"] == 0.5 and record["disable_tta"] is False and record["workers"] == {"npp": 0, "nps": 0}


def test_a_rerun_with_other_inference_settings_is_refused_other_workers_resume(fake_models, tmp_path):
    images = tmp_path / "images"
    _write_case(images, "c1", 0)
    _write_case(images, "c2", 1)
    fake_models.update(A={"c1": _probs(1), "c2": _probs(2)})
    out = tmp_path / "out"
    assert prediction.predict_folder(images, out, _ensemble("A"), crf="off") == ["c1", "c2"]
    (out / "c2.nii.gz").unlink()
    for changed, key in ((Inference(use_mirroring=False), "disable_tta"), (Inference(step_size=0.25), "step_size")):
        with pytest.raises(ValueError, match=rf"holds a run with other settings \({key} differ"):
            prediction.predict_folder(images, out, _ensemble("A"), crf="off", inference=changed)
    with pytest.raises(ValueError, match=r"holds a run with other settings \(fold differ"):
        prediction.predict_folder(images, out, _ensemble("A", fold=("0", "1")), crf="off")
    assert prediction.predict_folder(images, out, _ensemble("A"), crf="off", inference=Inference(npp=1, nps=1)) == ["c2"]


def test_a_folder_predicted_before_the_inference_settings_were_recorded_resumes_with_the_defaults(fake_models, tmp_path):
    """Older records lack step_size / disable_tta: they were nnU-Net's defaults, so a default run resumes there
    and a run with other settings is still refused."""
    images = tmp_path / "images"
    _write_case(images, "c1", 0)
    _write_case(images, "c2", 1)
    fake_models.update(A={"c1": _probs(1), "c2": _probs(2)})
    out = tmp_path / "out"
    prediction.predict_folder(images, out, _ensemble("A"), crf="off")
    (out / "c2.nii.gz").unlink()
    path = out / prediction.RUN_RECORD
    old = json.loads(path.read_text(encoding="utf-8"))
    del old["step_size"], old["disable_tta"]
    path.write_text(json.dumps(old), encoding="utf-8")
    with pytest.raises(ValueError, match=r"holds a run with other settings \(disable_tta differ"):
        prediction.predict_folder(images, out, _ensemble("A"), crf="off", inference=Inference(use_mirroring=False))
    assert prediction.predict_folder(images, out, _ensemble("A"), crf="off") == ["c2"]


def test_worker_counts_are_both_set_or_both_zero():
    assert Inference().in_process and not Inference(npp=1, nps=2).in_process
    with pytest.raises(ValueError, match="give both at least 1"):
        Inference(npp=0, nps=3)
    with pytest.raises(ValueError, match=r"must be in \(0, 1\]"):
        Inference(step_size=0)


def test_folds_are_parsed_like_nnunet(monkeypatch):
    assert _ensemble("A", fold=("0",)).fold == "0" and _ensemble("A", fold=["1", "2"]).folds == ("1", "2")
    with pytest.raises(ValueError, match="fold 1 given twice"):
        _ensemble("A", fold=("1", "0", "1"))
    with pytest.raises(ValueError, match="folds are 0, 1, ... or all"):
        _ensemble("A", fold=("x",))


def test_inference_settings_reach_nnunets_predictor(monkeypatch):
    """Every trainer x fold gets its own nnUNetPredictor with the step size and mirroring asked for."""
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    loaded = []
    monkeypatch.setattr(Ensemble, "check_trained", lambda self: None)
    monkeypatch.setattr(nnUNetPredictor, "initialize_from_trained_model_folder",
                        lambda self, folder, folds, checkpoint: loaded.append((folder, folds, checkpoint)))
    ensemble = _ensemble("A", "B", fold=("0", "3"))
    predictors = trained_models.load_predictors(ensemble, "cpu", Inference(step_size=0.75, use_mirroring=False))
    assert [[p.use_mirroring for p in fold] for fold in predictors] == [[False, False], [False, False]]
    assert all(p.tile_step_size == 0.75 for fold in predictors for p in fold)
    assert [(Path(f).name, folds) for f, folds, _ in loaded] == [
        ("A__nnUNetPlans__2d", ("0",)), ("A__nnUNetPlans__2d", ("3",)),
        ("B__nnUNetPlans__2d", ("0",)), ("B__nnUNetPlans__2d", ("3",))]
    default = trained_models.load_predictors(_ensemble("A"), "cpu")
    assert default[0][0].use_mirroring is True and default[0][0].tile_step_size == 0.5


def test_unknown_trainer_and_missing_fold_are_named(tmp_path):
    ensemble = Ensemble("Dataset999_Fake", "2d", ("0", "1"), ("A",), results_root=str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"unknown trainer A \(no folder .*A__nnUNetPlans__2d\)"):
        ensemble.check_trained()
    fold0 = tmp_path / "Dataset999_Fake" / "A__nnUNetPlans__2d" / "fold_0"
    fold0.mkdir(parents=True)
    (fold0 / "checkpoint_final.pth").write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match=r"trainer A: no checkpoint .*fold_1.* \(train fold 1 first\)"):
        ensemble.check_trained()


def test_determine_crf_refuses_several_folds(capsys):
    assert main(["determine-crf", "-d", "Dataset999_Fake", "-c", "2d", "-f", "0", "1", "-tr", "A"]) == 2
    assert "determine-crf takes one fold, not -f 0 1" in capsys.readouterr().err
