"""benchmarks/budget_study.py on constructed engine folders with known per-case Dice, clinical indices and times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nnunetv2_glrp.reproduction.results import encode

from benchmark_scripts import load_benchmark

CLASSES = ("RV", "MYO", "LV")


@pytest.fixture(scope="module")
def study():
    return load_benchmark("budget_study")


def _write_record(folder: Path, method: str, seed: int, dice: list[float], ef_mae: float | None, train_s: float,
                  model_folders: tuple[str, ...] | list[str] = ()):
    """A finished run of k = 2 whose case i has Dice dice[i] in every class."""
    cases = {f"p{i}_ED": {c: {"dice": d, "hd": 5.0, "hd95": 5.0, "assd": 1.0} for c in CLASSES}
             for i, d in enumerate(dice)}
    summary = {} if ef_mae is None else {"clinical": {"n_patients": 2, "quantities": {
        "LV_EF_pct": {"mae": ef_mae, "bias": -ef_mae}, "LV_EDV_ml": {"mae": 10.0, "bias": 0.0}}, "skipped": {}}}
    tag = f"{method}__k2__fold0__seed{seed}"
    record = {"method": method, "k": 2, "fold": 0, "seed": seed, "tag": tag, "budget": "cpulong", "cases": cases,
              "summary": encode(summary), "wall_seconds": {"train": train_s}, "model_folders": list(model_folders),
              "trainers": [f"{method}Trainer"] * len(model_folders)}
    (folder / "runs").mkdir(parents=True, exist_ok=True)
    (folder / "runs" / f"{tag}.json").write_text(json.dumps(record), encoding="utf-8")


def test_recipes_in_one_table_each_paired_with_its_own_nnunet_runs(study, tmp_path):
    """nnU-Net 0.5 on every case; GLRP 0.6 (seed 0) and 0.7 (seed 1); GLRP_semi 0.9 on both seeds. The semi
    folder's nnU-Net runs (same trainer, training reused: 0 s) are its paired reference and not a second row."""
    sup, semi = tmp_path / "engine_cpulong_nnunet", tmp_path / "engine_cpulong_semi"
    for seed in (0, 1):
        _write_record(sup, "nnU-Net", seed, [0.5, 0.5, 0.5], ef_mae=20.0 + seed, train_s=1200.0)
        _write_record(sup, "GLRP", seed, [0.6 + 0.1 * seed] * 3, ef_mae=None, train_s=1800.0 * (1 - seed))
        _write_record(semi, "nnU-Net", seed, [0.5, 0.5, 0.5], ef_mae=20.0 + seed, train_s=0.0)
        _write_record(semi, "GLRP", seed, [0.9, 0.9, 0.9], ef_mae=4.0 + 2 * seed, train_s=3600.0 + 1200 * seed)
    # Random_semi on seed 0 only: 0.8 on case 0, 0.85 on the others -> GLRP_semi - Random_semi known per case
    _write_record(semi, "Random", 0, [0.8, 0.85, 0.85], ef_mae=None, train_s=3000.0)
    out = tmp_path / "report"
    assert study.main(["--root", str(tmp_path), "--budgets", "cpulong", "--recipe", "nnunet", "semi",
                       "--k", "2", "--out", str(out)]) == 0
    listed = json.loads((out / "budget_study.json").read_text(encoding="utf-8"))["rows"]
    # nnU-Net once, from the first recipe
    assert [r["method"] for r in listed] == ["nnU-Net", "GLRP", "Random_semi", "GLRP_semi"]
    rows = {r["method"]: r for r in listed}
    assert rows["GLRP"]["mean_dice"] == pytest.approx(0.65) and rows["GLRP"]["per_seed"] == pytest.approx([0.6, 0.7])
    assert rows["GLRP_semi"]["vs_nnunet"]["mean_difference"] == pytest.approx(0.4)
    assert rows["GLRP"]["vs_nnunet"]["mean_difference"] == pytest.approx(0.15)
    # vs Random of the same recipe, on the one seed both have: 0.9 - (0.8 + 0.85 + 0.85) / 3
    assert rows["GLRP_semi"]["vs_random"]["mean_difference"] == pytest.approx(0.9 - 2.5 / 3)
    assert rows["GLRP_semi"]["vs_random"]["seeds"] == [0]
    assert "vs_random" not in rows["GLRP"] and "vs_random" not in rows["Random_semi"]  # no supervised Random
    assert rows["GLRP_semi"]["seed_spread"] == pytest.approx(0.0, abs=1e-12)
    # clinical indices: mean over the seeds that have them, and how many
    assert rows["GLRP_semi"]["clinical"]["LV EF MAE (%)"] == {"mean": pytest.approx(5.0), "std": pytest.approx(2 ** 0.5),
                                                              "n_draws": 2}
    assert rows["nnU-Net"]["clinical"]["LV EF bias (%)"]["mean"] == pytest.approx(-20.5)
    assert rows["GLRP"]["clinical"]["LV EF MAE (%)"] is None
    # training minutes: runs that trained only (GLRP seed 1 reused a training: 0 s, left out)
    assert rows["nnU-Net"]["train_minutes"] == pytest.approx(20.0)
    assert rows["GLRP"]["train_minutes"] == pytest.approx(30.0)
    assert rows["GLRP_semi"]["train_minutes"] == pytest.approx(70.0)
    text = (out / "budget_study.md").read_text(encoding="utf-8")
    assert "| cpulong | GLRP_semi k=2 | 5.0 (2) | -5.0 (2) | 10.0 (2) | - |" in text
    assert "| cpulong | GLRP k=2 | - | - | - | - |" in text
    assert "+0.400 [+0.400, +0.400] | +0.067 [+0.050, +0.100] (0) | 70 |" in text


def _fake_model(folder: Path, ema: float) -> str:
    """A finished nnU-Net model folder whose checkpoint_final.pth logs two epochs ending at EMA Dice ``ema``."""
    import torch

    folder.mkdir(parents=True)
    log = {"train_losses": [1.0, 0.5], "val_losses": [0.9, 0.6], "mean_fg_dice": [0.1, ema], "ema_fg_dice": [0.1, ema]}
    torch.save({"logging": log}, folder / "checkpoint_final.pth")
    return str(folder)


def test_curves_only_of_the_methods_asked_for(study, tmp_path):
    """--methods nnU-Net: the GLRP runs of the same folder give neither a row nor a curve."""
    folder = tmp_path / "engine_cpulong_nnunet"
    _write_record(folder, "nnU-Net", 0, [0.5] * 3, None, 60.0, [_fake_model(tmp_path / "m_nnunet", 0.4)])
    _write_record(folder, "GLRP", 0, [0.6] * 3, None, 60.0, [_fake_model(tmp_path / "m_glrp", 0.7)])
    rows, curves = study.budget_rows(folder, "cpulong", [2], ["nnU-Net"])
    assert [r["method"] for r in rows] == ["nnU-Net"]
    assert [(c["method"], c["ema_dice"][-1]) for c in curves] == [("nnU-Net", pytest.approx(0.4))]
    rows, curves = study.budget_rows(folder, "cpulong", [2], ["nnU-Net", "GLRP"])
    assert sorted((c["method"], round(c["ema_dice"][-1], 3)) for c in curves) == [("GLRP", 0.7), ("nnU-Net", 0.4)]


def test_seeds_keeps_only_the_draws_asked_for(study, tmp_path):
    """Three draws, GLRP - nnU-Net = +0.1, +0.2 and -0.3 per case: every draw gives 0.0; --seeds 0 1 gives
    +0.15 with the means and curves of draws 0 and 1 only."""
    folder = tmp_path / "engine_cpulong_nnunet"
    for seed, gain in ((0, 0.1), (1, 0.2), (2, -0.3)):
        _write_record(folder, "nnU-Net", seed, [0.5] * 3, None, 60.0,
                      [_fake_model(tmp_path / f"m_nnunet{seed}", 0.4 + seed / 10)])
        _write_record(folder, "GLRP", seed, [0.5 + gain] * 3, None, 60.0)
    rows, _ = study.budget_rows(folder, "cpulong", [2], ["nnU-Net", "GLRP"])
    assert rows[1]["seeds"] == [0, 1, 2] and rows[1]["vs_nnunet"]["mean_difference"] == pytest.approx(0.0)
    out = tmp_path / "report"
    assert study.main(["--root", str(tmp_path), "--budgets", "cpulong", "--k", "2", "--methods", "nnU-Net", "GLRP",
                       "--seeds", "0", "1", "--out", str(out)]) == 0
    saved = json.loads((out / "budget_study.json").read_text(encoding="utf-8"))
    rows = {r["method"]: r for r in saved["rows"]}
    assert rows["GLRP"]["seeds"] == [0, 1] and rows["GLRP"]["per_seed"] == pytest.approx([0.6, 0.7])
    assert rows["GLRP"]["vs_nnunet"]["mean_difference"] == pytest.approx(0.15)
    assert sorted((c["seed"], round(c["ema_dice"][-1], 3)) for c in saved["curves"]) == [(0, 0.4), (1, 0.5)]
