"""reproduce's grid, tables and the demo's small Table 1, on constructed results with known numbers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.reproduction import paper_values
from nnunetv2_glrp.reproduction.cells import table_cells
from nnunetv2_glrp.reproduction.estimate import make_plan
from nnunetv2_glrp.reproduction.grid import TABLES, Run, plan_runs, resolve_methods, results_root, trainer_name
from nnunetv2_glrp.reproduction.results import RunRecord
from nnunetv2_glrp.reproduction.runner import trainings
from nnunetv2_glrp.reproduction.training import Setting, Training
from nnunetv2_glrp.reproduction.tables import markdown

CLASSES = {"RV": 1, "MYO": 2, "LV": 3}


def _record(method, k, seed, dice_by_case, hd=5.0):
    """A run record whose every case has the given per-class Dice (dict class -> value) and HD."""
    cases = {case: {c: {"dice": d[c], "hd": hd if d[c] > 0 else "inf", "hd95": hd, "assd": 1.0} for c in CLASSES}
             for case, d in dice_by_case.items()}
    return RunRecord.from_json({"method": method, "k": k, "fold": 0, "seed": seed, "cases": cases})


def test_grid_names_roots_and_shared_trainings(tmp_path):
    assert trainer_name("GLRPTrainer", 6, "full") == "GLRPTrainer_k6"
    assert trainer_name("GLRPTrainer", 6, "cpu") == "GLRPTrainer_k6_cpu"
    assert trainer_name("GRPTrainer", 2, "cpu", recipe="paper") == "GRPTrainer_k2_paper_cpu"
    assert trainer_name("GRPTrainer", 2, "cpu", recipe="decwarm") == "GRPTrainer_k2_decwarm_cpu"
    # the control row: nnU-Net's own trainer at the budget, no k and no recipe in its name
    assert trainer_name("NnunetControlTrainer", 6, "cpu", recipe="decwarm") == "NnunetControlTrainer_cpu"
    assert trainer_name("NnunetControlTrainer", 2, "full") == "NnunetControlTrainer"
    assert results_root(0, tmp_path) == tmp_path and results_root(3, tmp_path) == tmp_path / "glrp_seed_3"
    table1 = TABLES[1].methods
    assert resolve_methods(["GLRP-cl", "pcl"], table1) == ("Random", "GLRP", "PCL")  # Random always, first
    assert resolve_methods(["nnu-net", "GLRP"], table1) == ("Random", "nnU-Net", "GLRP")
    assert resolve_methods(None, table1) == ("Random", "SimCLR", "GCL", "PCL", "GLRP")
    with pytest.raises(ValueError, match="unknown method 'BYOL'"):
        resolve_methods(["BYOL"], table1)
    runs = plan_runs(("Random", "GLRP", "GLRP+CRF"), (10,), (0,), (0, 1))
    assert len(runs) == 6 and runs[0] == Run("Random", 10, 0, 0) and runs[3].seed == 1
    # GLRP+CRF fuses GLRP, GRP and LRP: GLRP's training is shared, not trained twice
    setting = Setting("1", "Dataset001_X", "2d", "nnUNetPlans", "cpu", "nnunet", "cpu", tmp_path, tmp_path, tmp_path)
    assert trainings(setting, runs) == [Training(t, f"{t}_k10_cpu", 0, s) for s in (0, 1)
                                        for t in ("RandomInitTrainer", "GLRPTrainer", "GRPTrainer", "LRPTrainer")]
    # the control row trains on its own fold (from runner.control_folds), not on the run's fold
    control = plan_runs(("nnU-Net",), (2,), (0,), (1,))
    setting.control_folds[(2, 1, 0)] = 7
    assert trainings(setting, control) == [Training("NnunetControlTrainer", "NnunetControlTrainer_cpu", 7, 1)]
    with pytest.raises(KeyError, match="no control fold for k=2, seed 0"):
        trainings(setting, plan_runs(("nnU-Net",), (2,), (0,), (0,)))


def test_table1_cells_spread_paper_values_and_paired_comparison():
    cases = [f"c{i}" for i in range(6)]
    records = []
    for seed, (random_dice, glrp_dice) in enumerate([(0.6, 0.7), (0.8, 0.85)]):
        records.append(_record("Random", 2, seed, {c: dict.fromkeys(CLASSES, random_dice) for c in cases}))
        records.append(_record("GLRP", 2, seed, {c: dict.fromkeys(CLASSES, glrp_dice) for c in cases}))
    records.append(_record("GLRP", 6, 0, {c: dict.fromkeys(CLASSES, 0.9) for c in cases}))  # no Random at k = 6
    cells = table_cells(records, ("Random", "GLRP"), (2, 6), list(CLASSES), n_boot=1000)
    random2, glrp2, glrp6 = cells[("Random", 2)], cells[("GLRP", 2)], cells[("GLRP", 6)]
    assert random2.dice.mean == pytest.approx(0.7) and random2.dice.std == pytest.approx(math.sqrt(0.02))
    assert glrp2.dice.mean == pytest.approx(0.775) and glrp2.dice.std == pytest.approx(0.15 / math.sqrt(2))
    cmp = glrp2.vs_reference  # differences 0.1 (seed 0) and 0.05 (seed 1) on every case
    assert cmp.mean_difference == pytest.approx(0.075) and cmp.ci_low == pytest.approx(0.05)
    assert cmp.ci_high == pytest.approx(0.1) and cmp.n_draws == 2
    assert glrp6.vs_reference is None and glrp6.dice.std is None
    text = markdown(TABLES[1], cells, ("Random", "GLRP"), (2, 6), "constructed")
    assert "| Random | ours | 0.700 (0.141) | - |" in text
    assert "| GLRP-cl | ours | 0.775 (0.106) | 0.900 (1 draw) |" in text
    assert f"| GLRP-cl | paper (ACDC) | {paper_values.table1_value('GLRP', 2):.3f} | 0.816 |" in text
    assert f"| GLRP-cl | {cmp.format()} | - |" in text and "p = 0.031" in cmp.format()  # 6 positive: 2/2**6


def test_per_class_table_dice_hd_and_infinite_distances():
    cases = ["a", "b"]
    records = [_record("Random", 10, 0, {c: {"RV": 0.5, "MYO": 0.6, "LV": 0.7} for c in cases}, hd=10.0),
               _record("GLRP+CRF", 10, 0, {"a": {"RV": 0.0, "MYO": 0.8, "LV": 0.9},
                                           "b": {"RV": 0.6, "MYO": 0.8, "LV": 0.9}}, hd=4.0)]
    cells = table_cells(records, ("Random", "GLRP+CRF"), (10,), list(CLASSES), n_boot=200)
    crf = cells[("GLRP+CRF", 10)]
    assert crf.class_hd["RV"].n_inf == 1 and crf.class_hd["RV"].spread.mean == 4.0
    assert crf.dice.mean == pytest.approx(np.mean([(0.0 + 0.8 + 0.9) / 3, (0.6 + 0.8 + 0.9) / 3]))
    text = markdown(TABLES[7], cells, ("Random", "GLRP+CRF"), (10,), "constructed")
    # our row: LV, MYO, RV Dice, mean Dice, then HD per class and mean (the paper's column order)
    assert "| GLRP-cl + CRF | ours | 0.900 (1 draw) | 0.800 (1 draw) | 0.300 (1 draw) | 0.667 (1 draw) | " \
           "4.00 (1 draw) | 4.00 (1 draw) | 4.00 (1 draw), 1 inf | 4.00 (1 draw), 1 inf |" in text
    assert "| GLRP-cl + CRF | paper (ACDC) | 0.927 | 0.847 | 0.853 | 0.876 | - | - | - | 26.40 |" in text
    assert "| Random | paper (ACDC) | - | - | - | - | - | - | - | - |" in text


def test_plan_estimates_from_earlier_runs_or_says_unknown():
    earlier = [RunRecord.from_json({"method": "GLRP", "k": 2, "fold": 0, "seed": 0, "budget": "full",
                                    "trained_now": ["A"], "wall_seconds": {"train": 100.0, "predict": 8.0,
                                                                           "evaluate": 2.0},
                                    "cases": {"a": {"LV": dict.fromkeys(("dice", "hd", "hd95", "assd"), 1.0)}}})]
    plan = make_plan(4, 1, 4, ["A", "A"], "full", earlier)
    assert plan.estimated_seconds == pytest.approx(2 * 100 + 3 * 10)
    assert "4 runs planned: 1 already complete, 3 to run, 2 of their 4 trainings" in plan.describe()
    assert make_plan(4, 0, 4, ["A"] * 4, "full", []).estimated_seconds is None
    assert "unknown" in make_plan(4, 0, 4, ["A"] * 4, "full", []).describe()
    assert make_plan(2, 0, 2, ["A", "B"], "cpu", []).estimated_seconds == pytest.approx(2 * 210)
    assert make_plan(2, 1, 2, [], "full", earlier).estimated_seconds == pytest.approx(10)  # only predictions left


def test_plan_times_each_training_by_its_own_trainer():
    """A semi-supervised training costs about twice a supervised one: each training still to do is timed by the
    earlier trainings of its own trainer; a trainer never timed gets the mean of all earlier trainings."""
    def record(seed, trained, train):
        return RunRecord.from_json({"method": "GLRP", "k": 6, "fold": 0, "seed": seed, "budget": "cpulong",
                                    "trained_now": trained, "wall_seconds": {"train": train, "predict": 60.0},
                                    "cases": {"a": {"LV": dict.fromkeys(("dice", "hd", "hd95", "assd"), 1.0)}}})
    earlier = [record(0, ["Semi"], 1400.0), record(1, ["Semi"], 1500.0), record(2, ["Control"], 700.0),
               record(3, [], None), record(4, ["Control", "Other"], 1000.0)]  # two trainings in one run: 500 each
    plan = make_plan(6, 0, 6, ["Semi", "Control", "Control", "New"], "cpulong", earlier)
    control, semi = (700 + 500) / 2, (1400 + 1500) / 2
    everything = (1400 + 1500 + 700 + 500 + 500) / 5  # the trainer never timed
    assert plan.training_seconds == {"Semi": (1, semi), "Control": (2, control), "New": (1, everything)}
    assert plan.estimated_seconds == pytest.approx(semi + 2 * control + everything + 6 * 60.0)
    assert "2 x 600 s training (Control)" in plan.describe() and "1 x 1450 s training (Semi)" in plan.describe()


def test_a_resumed_training_is_timed_and_estimated_for_the_share_it_had_left():
    """A killed training resumes from its checkpoint: its record's wall time covers only the epochs it had left,
    and a training about to resume needs only those (a Random_semi run resumed at 80 % took 460 s of ~1,360)."""
    def record(seed, trained, train, resumed=None):
        return RunRecord.from_json({"method": "GLRP", "k": 2, "fold": 0, "seed": seed, "budget": "cpulong",
                                    "trained_now": trained, "resumed_now": resumed or {},
                                    "wall_seconds": {"train": train, "predict": 60.0},
                                    "cases": {"a": {"LV": dict.fromkeys(("dice", "hd", "hd95", "assd"), 1.0)}}})
    earlier = [record(0, ["Semi"], 1400.0),
               record(1, ["Semi"], 400.0, {"Semi": 0.75}),  # a quarter of a training: 1600 s for a whole one
               record(2, ["Semi"], 10.0, {"Semi": 0.95}),  # too little of it left to time: not counted
               record(3, ["Semi", "Control"], 900.0, {"Semi": 0.5})]  # 1.5 trainings' worth: 600 s each
    plan = make_plan(4, 0, 4, ["Semi", "Semi", "Control"], "cpulong", earlier, [0.0, 0.8, 0.0])
    semi = (1400 + 1600 + 600) / 3
    assert plan.training_seconds == {"Semi": (1, pytest.approx(semi)), "Control": (1, pytest.approx(600.0))}
    assert plan.resumed == (("Semi", 0.8, pytest.approx(0.2 * semi)),)
    assert plan.n_trainings_todo == 3
    assert plan.estimated_seconds == pytest.approx(semi + 600 + 0.2 * semi + 4 * 60.0)
    assert "240 s to finish Semi (resumed at 80%)" in plan.describe()


def _write(array, path):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 8.0))
    sitk.WriteImage(image, str(path))


def test_demo_small_table1_from_the_engines_records(tmp_path):
    """Random predicts the reference exactly, GLRP misses the RV in every case: Dice 1 vs 2/3, a paired
    difference of -1/3 on every one of the 4 cases (exact Wilcoxon p = 2/2**4), one draw."""
    from nnunetv2_glrp.demo import DemoConfig, small_table1
    from nnunetv2_glrp.evaluate import evaluate_folder
    from nnunetv2_glrp.reproduction.results import read_metrics_csv

    out, raw = tmp_path / "demo", tmp_path / "demo" / "Dataset950_Demo"
    methods = ("Random", "GLRP")
    for sub in ("imagesTs", "labelsTs", *(f"predictions/{m}" for m in methods)):
        (raw if "Ts" in sub else out).joinpath(sub).mkdir(parents=True)
    (raw / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **CLASSES}}))
    rng = np.random.default_rng(0)
    for i in range(4):
        labels = np.zeros((3, 24, 24), np.uint8)
        labels[:, 4:10, 4:10], labels[:, 12:20, 12:20], labels[:, 14:18, 14:18] = 1, 2, 3
        _write(rng.normal(size=labels.shape).astype(np.float32), raw / "imagesTs" / f"case{i}_0000.nii.gz")
        _write(labels, raw / "labelsTs" / f"case{i}.nii.gz")
        _write(labels, out / "predictions" / methods[0] / f"case{i}.nii.gz")
        _write(np.where(labels == 1, 0, labels).astype(np.uint8), out / "predictions" / methods[1] / f"case{i}.nii.gz")
    records = []
    for m in methods:  # what the engine records for each run
        evaluate_folder(out / "predictions" / m, raw / "labelsTs", out_dir=out / "evaluation" / m)
        cases = read_metrics_csv(out / "evaluation" / m / "metrics_per_case.csv", list(CLASSES))
        records.append(RunRecord.from_json({"method": m, "k": 2, "fold": 0, "seed": 0, "cases": cases,
                                            "predictions": str(out / "predictions" / m),
                                            "trainers": [f"{m}Trainer_k2_cpu"]}))

    table = small_table1(DemoConfig(out=str(out)), records, raw, out)
    text = table.read_text()
    assert "| Random | ours | 1.000 (1 draw) |" in text and "| GLRP-cl | ours | 0.667 (1 draw) |" in text
    assert "| Random | paper (ACDC) | 0.421 |" in text and "| GLRP-cl | paper (ACDC) | 0.684 |" in text
    assert "| GLRP-cl | -0.333 [-0.333, -0.333], p = 0.12, 1 draw: cases only |" in text
    for name in ("demo_table1_dice_vs_k.png", "demo_table1_class_boxplots.png", "demo_table1_slices.png"):
        assert (out / name).read_bytes()[:4] == b"\x89PNG"
    assert small_table1(DemoConfig(out=str(out), methods=("Random",)), records[:1], raw, out) is None


def test_mean_hd_is_per_draw_over_the_classes_that_have_a_distance():
    """Draw 0 misses the RV everywhere, draw 1 the MYO: each draw's mean HD averages its other two classes."""
    hd = {0: {"RV": "inf", "MYO": 2.0, "LV": 4.0}, 1: {"RV": 6.0, "MYO": "inf", "LV": 8.0}}
    records = []
    for seed in (0, 1):
        cases = {c: {cls: {"dice": 0.5, "hd": hd[seed][cls], "hd95": 1.0, "assd": 1.0} for cls in CLASSES}
                 for c in ("a", "b")}
        records.append(RunRecord.from_json({"method": "GLRP", "k": 10, "fold": 0, "seed": seed, "cases": cases}))
    cell = table_cells(records, ("GLRP",), (10,), list(CLASSES))[("GLRP", 10)]
    assert cell.mean_hd.by_draw == (3.0, 7.0) and cell.mean_hd.spread.mean == 5.0 and cell.mean_hd.n_inf == 4
    assert cell.class_hd["RV"].spread.per_draw == (6.0,) and cell.class_hd["RV"].spread.n_draws == 1


def _clinical_summary(ef_mae, ef_bias, edv_mae, mass_mae=None, n=4):
    quantities = {"LV_EF_pct": {"mae": ef_mae, "bias": ef_bias}, "LV_EDV_ml": {"mae": edv_mae, "bias": 0.0}}
    if mass_mae is not None:
        quantities["LV_mass_g"] = {"mae": mass_mae, "bias": 0.0}
    return {"clinical": {"n_patients": n, "quantities": quantities, "skipped": {}}}


def test_clinical_section_beside_the_table_mean_and_spread_over_draws(tmp_path):
    """Two draws of Random with known clinical summaries, one of GLRP (mass not allowed, EF "nan" as a run
    record stores it), GLRP at k = 6 recorded before evaluate had clinical indices: mean (sd across draws)."""
    from nnunetv2_glrp.reproduction.clinical_table import clinical_cells, clinical_lines
    from nnunetv2_glrp.reproduction.results import encode

    dice = {f"c{i}": {c: 0.8 for c in CLASSES} for i in range(2)}
    records = []
    for seed, (mae, bias, edv, mass) in enumerate(((4.0, -2.0, 10.0, 5.0), (6.0, 1.0, 14.0, 7.0))):
        base = _record("Random", 2, seed, dice)
        records.append(RunRecord.from_json({**base.raw, "summary": encode(_clinical_summary(mae, bias, edv, mass))}))
    glrp = _record("GLRP", 2, 0, dice)
    records.append(RunRecord.from_json({**glrp.raw, "summary": encode(_clinical_summary(math.nan, 0.5, 3.0))}))
    records.append(_record("GLRP", 6, 0, dice))
    lines = clinical_lines(records, ("Random", "GLRP"), (2, 6))
    assert "| method (k) | LV EF MAE (%) | LV EF bias (%) | LV EDV MAE (mL) | LV mass MAE (g) |" in lines
    sd = math.sqrt(2.0)  # sample sd of (4, 6), of (5, 7); of (-2, 1): sqrt(4.5); of (10, 14): sqrt(8)
    assert (f"| Random (k = 2) | 5.00 ({sd:.2f}) | -0.50 ({math.sqrt(4.5):.2f}) | 12.00 ({math.sqrt(8):.2f}) | "
            f"6.00 ({sd:.2f}) |") in lines
    assert "| GLRP-cl (k = 2) | - | 0.50 (1 draw) | 3.00 (1 draw) | - |" in lines
    assert "| GLRP-cl (k = 6) | - | - | - | - |" in lines and "| Random (k = 6) | - | - | - | - |" in lines
    cell = clinical_cells(records, ("Random",), (2,))[("Random", 2)]["LV EF MAE (%)"]
    assert cell.per_draw == (4.0, 6.0) and cell.n_draws == 2 and cell.n_cases == 4

    # the table file carries the section below the existing table, the JSON the numbers
    from nnunetv2_glrp.reproduction.api import write_outputs

    raw = tmp_path / "raw"
    raw.mkdir()
    files = write_outputs(records, 1, ("Random", "GLRP"), (2, 6), tmp_path, raw, CLASSES, "ctx", slices=False)
    text = files[0].read_text(encoding="utf-8")
    assert "| Random | ours | 0.800 (0.000) | - |" in text  # the Dice table is unchanged
    # the last "| GLRP-cl | " row is still the paired comparison's (the e2e test reads it so)
    assert ", p = " in text.split("| GLRP-cl | ")[-1].splitlines()[0]
    assert text.index("| Random | ours |") < text.index("### Clinical indices") and "| GLRP-cl (k = 2) | - | 0.50" in text
    saved = json.loads(files[1].read_text(encoding="utf-8"))["clinical"]
    random2 = next(c for c in saved if c["method"] == "Random" and c["k"] == 2)
    assert random2["LV EDV MAE (mL)"]["mean"] == pytest.approx(12.0) and random2["LV EDV MAE (mL)"]["n_draws"] == 2


def test_demo_report_shows_the_clinical_indices_per_row():
    from nnunetv2_glrp.demo import clinical_report_lines
    from nnunetv2_glrp.reproduction.results import encode

    rows = {"Random (R)": encode(_clinical_summary(4.25, -1.5, 9.0, 3.0, n=3)),
            "fused, no CRF": _clinical_summary(2.0, 0.25, 1.0, None, n=3), "old": {"n_cases": 2}}
    lines = clinical_report_lines(rows)
    assert lines[0] == "| row | patients | LV EF MAE (%) | LV EF bias (%) | LV EDV MAE (mL) | LV mass MAE (g) |"
    assert "| Random (R) | 3 | 4.25 | -1.50 | 9.00 | 3.00 |" in lines
    assert "| fused, no CRF | 3 | 2.00 | 0.25 | 1.00 | - |" in lines
    assert "| old | - | - | - | - | - |" in lines
