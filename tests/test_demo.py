"""The demo's resume guard: a demo folder is reused only with the settings that made it."""

import json
import os
from pathlib import Path

import pytest

from nnunetv2_glrp.dataset_split import patient_of_case
from nnunetv2_glrp.demo import DemoConfig, _record_config


def test_demo_config_is_recorded_and_a_mismatch_refused(tmp_path):
    path = tmp_path / "demo_config.json"
    _record_config(DemoConfig(out=str(tmp_path), seed=0), path)
    assert json.loads(path.read_text())["seed"] == 0
    _record_config(DemoConfig(out=str(tmp_path), seed=0), path)  # same settings: resume is fine
    with pytest.raises(ValueError, match="seed"):
        _record_config(DemoConfig(out=str(tmp_path), seed=1), path)


@pytest.fixture
def restored_environment():
    """run_demo points os.environ's nnU-Net folders (and GLRP_SEED) at the demo, as the command must; the
    tests after this one need the session's folders back, or their nnUNetv2_train subprocesses cannot
    find the session dataset."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


#: the test-only plans overlay: nnU-Net's design shrunk to learn the phantom in a few dozen iterations
TEST_PLANS = Path(__file__).resolve().parent / "plans" / "nnunet_test.json"
#: the from-scratch rows' mean test Dice must exceed this on the 10-patient easy phantom after the
#: 3 x 25-iteration ``_short`` budget. Measured on this 2-core machine (seed 0, 4 test volumes): 0.585 (RV 0.306,
#: MYO 0.697, LV 0.751); the same rows after the 2-iteration ``_tiny`` budget score 0.03-0.08
FROM_SCRATCH_FLOOR = 0.4


def test_demo_end_to_end_on_the_run_engine_fuses_registers_a_crf_and_learns(tmp_path, capsys, restored_environment):
    """The whole demo path on the run engine with 3 x 25-iteration trainers: trains nnU-Net's own trainer,
    Random and GLRP on the same 2 patients, predicts, fuses GLRP + Random, registers the post-processing on
    the validation cases, applies it and the paper's CRF, reports; the from-scratch rows learned the heart
    (Dice above a measured floor, per class too); a rerun reuses every output (the registration included)."""
    from nnunetv2_glrp.demo import run_demo

    cfg = DemoConfig(out=str(tmp_path / "demo"), dataset_id=907, patients=10, frames=3, budget="short",
                     difficulty="easy", plans=os.fspath(TEST_PLANS), semi_methods=("GLRP",))
    first = run_demo(cfg)
    rows = first["results"]
    names = list(rows)
    assert names[:4] == ["nnU-Net (NnunetControlTrainer_short)", "Random (RandomInitTrainer_k2_short)",
                         "GLRP (GLRPTrainer_k2_short)", "GLRP_semi (GLRPTrainer_k2_semi_short)"]
    for name in names[:2]:  # both from-scratch rows learned the heart, every class
        assert rows[name]["mean_dice"] > FROM_SCRATCH_FLOOR, (name, rows[name]["mean_dice"])
        assert all(c["dice"]["mean"] > 0.1 for c in rows[name]["classes"].values()), name
    # nnU-Net's own trainer on the Random row's two patients from the same seed is the same model
    assert rows[names[0]] == rows[names[1]]
    records = {r.method: r for r in first["records"]}
    assert records["nnU-Net"].raw["training_folds"][0] >= 5  # its own fold with the two drawn patients
    model = Path(records["GLRP"].raw["model_folders"][0])
    # the _semi row: the same encoder (one pretraining, the cache shared), the same two patients, and an unlabeled
    # pool of the train/val patients' frames without a test patient
    semi_model = Path(first["semi_records"][0].raw["model_folders"][0])
    sup, semi = (json.loads((m / "glrp_finetuning.json").read_text()) for m in (model, semi_model))
    assert semi_model != model and semi["recipe"]["semi"] is not None and sup["recipe"]["semi"] is None
    assert semi["pretrained_encoder"] == sup["pretrained_encoder"] is not None
    assert semi["selected_patients"] == sup["selected_patients"]
    test_patients = {patient_of_case(p.name.removesuffix(".nii.gz")) for p in
                     (tmp_path / "demo" / "nnUNet_raw" / "Dataset907_ACDC" / "labelsTs").glob("*.nii.gz")}
    assert semi["semi"]["pool_slices"] > 0 and test_patients
    assert not test_patients & set(semi["semi"]["pool_patients"]), semi["semi"]["pool_patients"]
    registration = json.loads((model / "crf.json").read_text())
    chosen = registration["chosen"]["name"]
    fused_rows = [name for name in names if name.startswith("fused GLRP + Random")]
    assert fused_rows == ["fused GLRP + Random, no CRF", f"fused GLRP + Random, registered: {chosen}",
                          "fused GLRP + Random, paper CRF, always on"]
    n_cases = rows[names[0]]["n_cases"]
    references = list((tmp_path / "demo" / "nnUNet_raw" / "Dataset907_ACDC" / "labelsTs").glob("*.nii.gz"))
    assert n_cases == len(references) > 0 and all(rows[r]["n_cases"] == n_cases for r in names)
    report = (tmp_path / "demo" / "demo_report.md").read_text()
    assert all(f"| {r} |" in report for r in names) and "mean HD95 (mm)" in report
    if chosen == "no CRF":  # the registered rule picked nothing: those labels are the plain fused argmax
        a, b = (rows[r] for r in fused_rows[:2])
        assert a["mean_dice"] == b["mean_dice"]
    stamp = (model / "crf.json").stat().st_mtime_ns
    again = run_demo(cfg)
    assert again["results"] == first["results"]
    assert (model / "crf.json").stat().st_mtime_ns == stamp
