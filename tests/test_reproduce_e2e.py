"""``reproduce`` end to end on the session phantom with the test-only ``_tiny`` trainers.

nnU-Net's own trainer (the control row), Random and GLRP at k = 2, seeds 1 and 2 (6 runs, 6 trainings; seed S > 0 trains into ``$nnUNet_results/glrp_seed_S``, so nothing here touches the seed-0
models other tests train). The first call is killed (an exception from inside the loop) after run 3's
training, before its prediction; the second completes the grid, and must train only what is missing.
Then: the control row trained on exactly the Random row's k patients, every file, the CSV against
``evaluate`` itself, the table's numbers recomputed from the CSV by the test's own arithmetic (a slow
bootstrap loop written from the documented protocol, scipy's Wilcoxon), a rerun that trains and predicts
nothing, and a run whose predictions were cut short completing the same table.
"""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import nnunetv2_glrp
from nnunetv2_glrp.cli import main
from nnunetv2_glrp.evaluate import METRICS, evaluate_folder
from nnunetv2_glrp.reproduction import runner
from nnunetv2_glrp.reproduction.grid import plan_runs, resolve_methods, results_root

DATASET = "Dataset901_ACDC"
METHODS, KS, SEEDS = ("nnU-Net", "Random", "GLRP"), (2,), (1, 2)
RUN_ORDER = resolve_methods(METHODS, METHODS)  # Random first, as every table compares with it
CLASSES = ("RV", "MYO", "LV")


class Killed(BaseException):
    """Stands for the process being killed: not an error any handler catches."""


def _argv(config: str, out: Path) -> list[str]:
    return ["reproduce", "-d", "901", "-c", config, "--table", "1", "--methods", *METHODS, "--k", *map(str, KS),
            "--seeds", *map(str, SEEDS), "--budget", "tiny", "-o", str(out), "--bootstrap", "500"]


@pytest.fixture(scope="module")
def reproduced(phantom_preprocessed, phantom_raw_dataset, tmp_path_factory):
    from nnunetv2_glrp.reproduction.api import reproduce

    config, out = phantom_preprocessed, tmp_path_factory.mktemp("reproduce") / "results"
    kwargs = dict(table=1, methods=METHODS, ks=KS, seeds=SEEDS, budget="tiny", out=out, n_boot=500)
    repo = os.fspath(Path(nnunetv2_glrp.__file__).resolve().parents[1])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH", "")) if p))
        mp.setenv("nnUNet_def_n_proc", "1")
        mp.setenv("nnUNet_compile", "false")
        predict, calls = runner._predict, []

        def killed_on_third(*args, **kw):
            calls.append(args[1])
            if len(calls) == 3:
                raise Killed()
            return predict(*args, **kw)

        mp.setattr(runner, "_predict", killed_on_third)
        with pytest.raises(Killed):
            reproduce("901", config, **kwargs)
        mp.setattr(runner, "_predict", predict)
        resumed = reproduce("901", config, **kwargs)
        yield config, out, resumed, calls


def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _checkpoints() -> dict[str, int]:
    base = Path(os.environ["nnUNet_results"])
    return {os.fspath(p): p.stat().st_mtime_ns for s in SEEDS
            for p in (results_root(s, base) / DATASET).glob("*_tiny__*/fold_*/checkpoint_final.pth")}


def test_a_killed_call_resumes_training_only_what_is_missing(reproduced):
    config, out, resumed, calls = reproduced
    runs = plan_runs(RUN_ORDER, KS, (0,), SEEDS)
    assert [r.tag for r in calls] == [r.tag for r in runs[:3]]
    # runs 1-2 were complete and run 3 trained before the kill: 4 runs and 3 trainings are left
    assert resumed.new_runs == 4 and resumed.new_trainings == 3
    assert len(_checkpoints()) == 6
    base = Path(os.environ["nnUNet_results"])
    for seed in SEEDS:  # each seed trained into its own tree with GLRP_SEED = seed
        setup = results_root(seed, base) / DATASET / f"GLRPTrainer_k2_tiny__nnUNetPlans__{config}" / "fold_0"
        import json

        assert json.loads((setup / "glrp_finetuning.json").read_text())["seed"] == seed
    draws = [json.loads((results_root(s, base) / DATASET / f"RandomInitTrainer_k2_tiny__nnUNetPlans__{config}"
                         / "fold_0" / "k_patients.json").read_text())["patients"] for s in SEEDS]
    assert draws[0] != draws[1]  # two seeds, two draws of the k patients


def test_the_control_row_is_nnunets_trainer_on_the_same_k_patients(reproduced):
    """nnU-Net's trainer draws nothing: it trained on an extra fold holding exactly the cases of the patients
    the Random row drew at the same k and seed, validated on fold 0's validation cases, and recorded its seed."""
    import json

    config, out, _, _ = reproduced
    base = Path(os.environ["nnUNet_results"])
    splits = json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET / "splits_final.json").read_text())
    for k in KS:
        for seed in SEEDS:
            record = json.loads((out / "runs" / f"nnU-Net__k{k}__fold0__seed{seed}.json").read_text())
            assert record["trainers"] == ["NnunetControlTrainer_tiny"]
            fold = record["training_folds"][0]
            assert fold >= 5  # nnU-Net's own folds 0-4 stay as they are
            random = results_root(seed, base) / DATASET / f"RandomInitTrainer_k{k}_tiny__nnUNetPlans__{config}" / "fold_0"
            drawn = json.loads((random / "k_patients.json").read_text())
            assert sorted(splits[fold]["train"]) == sorted(drawn["cases"])
            assert sorted({c.rsplit("_", 1)[0] for c in splits[fold]["train"]}) == sorted(drawn["patients"])
            assert len(drawn["patients"]) == k and splits[fold]["val"] == splits[0]["val"]
            control = Path(record["model_folders"][0])
            assert control.name == f"fold_{fold}" and control.parent.name.startswith("NnunetControlTrainer_tiny__")
            setup = json.loads((control / "glrp_finetuning.json").read_text())
            assert setup["seed"] == seed and sorted(setup["training_cases"]) == sorted(drawn["cases"])
            # the plugin's RandomInitTrainer is nnU-Net's trainer loss for loss (tests/test_nnunet_equivalence.py):
            # on the same patients from the same seed both rows are the same model, case for case
            ours = json.loads((out / "runs" / f"Random__k{k}__fold0__seed{seed}.json").read_text())["cases"]
            assert record["cases"] == ours


def test_every_file_and_the_csv_is_what_evaluate_computes(reproduced, phantom_raw_dataset, tmp_path):
    _, out, _, _ = reproduced
    for name in ("table1.md", "table1.json", "runs.csv", "reproduce.json"):
        assert (out / name).stat().st_size > 0
    for name in ("table1_dice_vs_k.png", "table1_class_boxplots.png", "table1_slices.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(out.rglob(".*tmp*"))  # nothing half-written left
    rows = _read_csv(out / "runs.csv")
    cases = sorted(p.name[: -len(".nii.gz")] for p in (Path(phantom_raw_dataset) / "labelsTs").iterdir())
    assert len(rows) == 6 * len(cases) * len(CLASSES)
    for run in plan_runs(RUN_ORDER, KS, (0,), SEEDS):
        ours = {(r["case"], r["class"]): r for r in rows
                if (r["method"], int(r["k"]), int(r["seed"])) == (run.method, run.k, run.seed)}
        assert float(next(iter(ours.values()))["wall_seconds"]) > 0
        evaluate_folder(out / "predictions" / run.tag, Path(phantom_raw_dataset) / "labelsTs", out_dir=tmp_path / run.tag)
        for row in _read_csv(tmp_path / run.tag / "metrics_per_case.csv"):
            for cls in CLASSES:
                for metric in METRICS:
                    assert float(ours[(row["case"], cls)][metric]) == float(row[f"{cls}_{metric}"]), (run, cls, metric)


def _dice(rows, method, k) -> np.ndarray:
    """[seeds, cases] mean Dice over the classes, straight from the CSV."""
    grid = []
    for seed in SEEDS:
        sel = [r for r in rows if (r["method"], int(r["k"]), int(r["seed"])) == (method, k, seed)]
        cases = sorted({r["case"] for r in sel})
        grid.append([np.mean([float(r["dice"]) for r in sel if r["case"] == c]) for c in cases])
    return np.array(grid)


def _slow_bootstrap(diffs: np.ndarray, n_boot: int, seed: int) -> tuple[float, float]:
    """The documented two-level percentile bootstrap, one resample at a time: the generator
    default_rng(seed) first draws all [n_boot, draws] draw indices, then all [n_boot, cases] case indices."""
    rng = np.random.default_rng(seed)
    n_draws, n_cases = diffs.shape
    draws, cases = rng.integers(0, n_draws, (n_boot, n_draws)), rng.integers(0, n_cases, (n_boot, n_cases))
    means = []
    for b in range(n_boot):
        means.append(sum(diffs[d, c] for d in draws[b] for c in cases[b]) / (n_draws * n_cases))
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def test_the_table_holds_the_csvs_numbers_and_the_papers(reproduced):
    from scipy.stats import wilcoxon

    _, out, _, _ = reproduced
    rows, table = _read_csv(out / "runs.csv"), (out / "table1.md").read_text()
    for k in KS:
        for method, label in (("Random", "Random"), ("nnU-Net", "nnU-Net"), ("GLRP", "GLRP-cl")):
            per_seed = _dice(rows, method, k).mean(axis=1)
            mean = sum(per_seed) / len(per_seed)
            std = float(np.sqrt(sum((v - mean) ** 2 for v in per_seed) / (len(per_seed) - 1)))
            assert f"{mean:.3f} ({std:.3f})" in table.split(f"| {label} | ours |")[1].splitlines()[0]
        for label, method in (("GLRP-cl", "GLRP"), ("nnU-Net", "nnU-Net")):  # paired with Random
            diffs = _dice(rows, method, k) - _dice(rows, "Random", k)
            low, high = _slow_bootstrap(diffs, 500, 0)
            cell = table.split(f"| {label} | ")[-1].splitlines()[0].split(" | ")[KS.index(k)]
            assert cell.startswith(f"{diffs.mean():+.3f} [{low:+.3f}, {high:+.3f}], p = "), (cell, k, label)
            per_case = diffs.mean(axis=0)
            if np.count_nonzero(per_case):
                p = wilcoxon(per_case).pvalue
                assert f"p = {p:.2g}" in cell or (p < 1e-4 and "p = <1e-4" in cell), (cell, p)
    assert "| Random | paper (ACDC) | 0.421 |" in table and "| GLRP-cl | paper (ACDC) | 0.684 |" in table
    assert "| nnU-Net | paper (ACDC) | - |" in table  # the paper has no nnU-Net row


def test_a_rerun_trains_and_predicts_nothing(reproduced, capsys):
    config, out, _, _ = reproduced
    before, table = _checkpoints(), (out / "table1.md").read_bytes()
    predictions = {os.fspath(p): p.stat().st_mtime_ns for p in (out / "predictions").rglob("*.nii.gz")}
    assert main(_argv(config, out)) == 0
    text = capsys.readouterr().out
    assert "6 runs planned: 6 already complete, 0 to run" in text and "0 new runs (0 trainings)" in text
    assert _checkpoints() == before
    assert {os.fspath(p): p.stat().st_mtime_ns for p in (out / "predictions").rglob("*.nii.gz")} == predictions
    assert (out / "table1.md").read_bytes() == table


def test_a_run_cut_short_completes_the_same_table_and_a_new_model_is_predicted_again(reproduced, capsys):
    config, out, _, _ = reproduced
    table = (out / "table1.md").read_bytes()
    without_wall = lambda: [{k: v for k, v in r.items() if k != "wall_seconds"} for r in _read_csv(out / "runs.csv")]  # noqa: E731
    csv_before = without_wall()
    run = plan_runs(RUN_ORDER, KS, (0,), SEEDS)[5]
    (out / "runs" / f"{run.tag}.json").unlink()  # killed while predicting: record missing, half the cases written
    written = sorted((out / "predictions" / run.tag).glob("*.nii.gz"))
    for p in written[: len(written) // 2]:
        p.unlink()
    assert main(_argv(config, out)) == 0
    assert "1 new runs (0 trainings)" in capsys.readouterr().out
    assert (out / "table1.md").read_bytes() == table and without_wall() == csv_before

    # a model replaced since (here: its checkpoint touched) makes its run predict again from scratch
    other = plan_runs(RUN_ORDER, KS, (0,), SEEDS)[0]
    checkpoint = next(p for p in _checkpoints() if "RandomInitTrainer_k2_tiny__" in p and "glrp_seed_1" in p)
    os.utime(checkpoint, ns=(Path(checkpoint).stat().st_atime_ns, Path(checkpoint).stat().st_mtime_ns + 10**9))
    stamp = (out / "predictions" / other.tag / sorted(os.listdir(out / "predictions" / other.tag))[0]).stat().st_mtime_ns
    assert main(_argv(config, out)) == 0
    assert "1 new runs (0 trainings)" in capsys.readouterr().out
    first = out / "predictions" / other.tag / sorted(os.listdir(out / "predictions" / other.tag))[0]
    assert first.stat().st_mtime_ns != stamp
    assert (out / "table1.md").read_bytes() == table


def test_a_model_of_another_seed_is_refused(reproduced):
    from nnunetv2_glrp.reproduction.training import Training, check_setup

    from nnunetv2_glrp.reproduction.engine import make_setting

    setting = make_setting("901", reproduced[0], reproduced[1], "tiny")
    # the seed-2 model copied into the seed-1 tree, as a mistaken manual copy would
    good = setting.model_folder("GLRPTrainer", "GLRPTrainer_k2_tiny", 0, 2)
    wrong = setting.model_folder("GLRPTrainer", "GLRPTrainer_k2_tiny_copy", 0, 1)
    shutil.copytree(good, wrong)
    try:
        check_setup(setting, Training("GLRPTrainer", "GLRPTrainer_k2_tiny", 0, 2))
        with pytest.raises(ValueError, match="glrp_finetuning.json records GLRP_SEED=2"):
            check_setup(setting, Training("GLRPTrainer", "GLRPTrainer_k2_tiny_copy", 0, 1))
    finally:
        shutil.rmtree(wrong.parent)


def test_make_tables_rewrites_the_table_from_the_records_with_another_bootstrap_seed(reproduced):
    import subprocess
    import sys

    _, out, _, _ = reproduced
    before = (out / "table1.md").read_text()
    script = Path(nnunetv2_glrp.__file__).resolve().parents[1] / "evaluation" / "make_tables.py"
    done = subprocess.run([sys.executable, os.fspath(script), os.fspath(out), "--bootstrap", "500",
                           "--bootstrap_seed", "3"], capture_output=True, encoding="utf-8", errors="replace", env=dict(os.environ))
    assert done.returncode == 0, done.stderr[-2000:]
    after = (out / "table1.md").read_text()
    assert "500 resamples, seed 3" in after and "500 resamples, seed 0" in before
    ours = lambda text: [line for line in text.splitlines() if "| ours |" in line]  # noqa: E731
    assert ours(after) == ours(before)  # the means and spreads do not depend on the bootstrap


def test_an_output_folder_of_another_budget_is_refused_before_anything_runs(reproduced, capsys):
    config, out, _, _ = reproduced
    argv = _argv(config, out)
    argv[argv.index("tiny")] = "cpu"
    before = sorted(p.name for p in out.iterdir())
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"{out / 'reproduce.json'} belongs to another reproduction (budget 'tiny')" in err and "use another -o" in err
    assert sorted(p.name for p in out.iterdir()) == before


def test_a_k_beyond_the_folds_training_patients_is_refused(reproduced, capsys):
    config, out, _, _ = reproduced
    argv = _argv(config, out)
    argv[argv.index("--k") + 1: argv.index("--k") + 1 + len(KS)] = ["2", "30"]
    assert main(argv) == 2
    assert "k = [30] labeled patients requested, but fold 0 of" in capsys.readouterr().err
