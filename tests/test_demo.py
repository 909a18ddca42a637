"""The demo's resume guard: a demo folder is reused only with the settings that made it."""

import json
import os

import pytest

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


def test_demo_end_to_end_with_tiny_trainers_fuses_and_registers_a_crf(tmp_path, capsys, restored_environment):
    """The whole demo path with 1 x 2-iteration trainers: trains, predicts, fuses the two models,
    registers the post-processing on the validation cases, applies it and the paper's CRF, reports;
    a rerun reuses every output (the registration included)."""
    from nnunetv2_glrp.demo import run_demo

    trainers = ("RandomInitTrainer_k2_tiny", "GLRPTrainer_k2_tiny")
    cfg = DemoConfig(out=str(tmp_path / "demo"), dataset_id=907, patients=10, frames=3, trainers=trainers,
                     fused=trainers[::-1])
    first = run_demo(cfg)
    registration = json.loads((tmp_path / "demo" / "nnUNet_results" / "Dataset907_ACDC"
                               / "GLRPTrainer_k2_tiny__nnUNetPlans__nnunet_cpu" / "fold_0" / "crf.json").read_text())
    chosen = registration["chosen"]["name"]
    fused_rows = [name for name in first["results"] if name.startswith("fused GLRP + RandomInit")]
    assert fused_rows == ["fused GLRP + RandomInit, no CRF", f"fused GLRP + RandomInit, registered: {chosen}",
                          "fused GLRP + RandomInit, paper CRF, always on"]
    n_cases = first["results"][trainers[0]]["n_cases"]
    assert n_cases > 0 and all(first["results"][r]["n_cases"] == n_cases for r in fused_rows)
    report = (tmp_path / "demo" / "demo_report.md").read_text()
    assert all(f"| {r} |" in report for r in fused_rows) and "mean HD95 (mm)" in report
    if chosen == "no CRF":  # the registered rule picked nothing: those labels are the plain fused argmax
        a, b = (first["results"][r] for r in fused_rows[:2])
        assert a["mean_dice"] == b["mean_dice"]
    stamp = (tmp_path / "demo" / "nnUNet_results" / "Dataset907_ACDC" / "GLRPTrainer_k2_tiny__nnUNetPlans__nnunet_cpu"
             / "fold_0" / "crf.json").stat().st_mtime_ns
    again = run_demo(cfg)
    assert again["results"] == first["results"]
    assert (tmp_path / "demo" / "nnUNet_results" / "Dataset907_ACDC" / "GLRPTrainer_k2_tiny__nnUNetPlans__nnunet_cpu"
            / "fold_0" / "crf.json").stat().st_mtime_ns == stamp
