"""The run engine's pretraining seeds: ``shared`` (one encoder for every seed) and ``per-seed`` (seed S's
pretrained rows from pretraining seed S), with a fake ``nnUNetv2_train`` that records what the engine handed it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from nnunetv2_glrp.reproduction import engine
from nnunetv2_glrp.reproduction.training import PER_SEED_TREE, Setting, Training, check_setup, train

#: writes what a plugin trainer records (GLRP_SEED, GLRP_PRETRAIN_SEED, default 0) and where nnU-Net would train
FAKE_TRAIN = """\
import json, os, pathlib, sys
dataset, configuration, fold, trainer = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[5]
folder = (pathlib.Path(os.environ["nnUNet_results"]) / "Dataset001_X" / f"{trainer}__nnUNetPlans__{configuration}"
          / f"fold_{fold}")
folder.mkdir(parents=True, exist_ok=True)
(folder / "glrp_finetuning.json").write_text(json.dumps({"seed": int(os.environ["GLRP_SEED"]),
                                                        "pretraining_seed": int(os.environ.get("GLRP_PRETRAIN_SEED", 0))}))
(folder / "checkpoint_final.pth").write_bytes(b"fake")
"""

GLRP = ("GLRPTrainer", "GLRPTrainer_k2_cpu")
RANDOM = ("RandomInitTrainer", "RandomInitTrainer_k2_cpu")


def _setting(base: Path, mode: str) -> Setting:
    return Setting("1", "Dataset001_X", "2d", "nnUNetPlans", "cpu", "nnunet", "cpu", base / "results", base,
                   base / "out", None, mode)


def _recorded(setting: Setting, family: tuple[str, str], seed: int) -> tuple[Path, dict]:
    folder = setting.model_folder(*family, 0, seed)
    return folder, json.loads((folder / "glrp_finetuning.json").read_text())


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    fake = tmp_path / "nnUNetv2_train"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_TRAIN)
    fake.chmod(0o755)
    monkeypatch.setattr("nnunetv2_glrp.environment.nnunet_command", lambda name: os.fspath(fake))
    monkeypatch.setenv("GLRP_PRETRAIN_SEED", "7")  # the user's own choice: what "shared" keeps


def test_per_seed_gives_each_seed_its_pretraining_seed_and_a_tree_of_its_own(tmp_path, fake_train):
    shared, per_seed = _setting(tmp_path, "shared"), _setting(tmp_path, "per-seed")
    for seed in (0, 2):
        for setting in (shared, per_seed):
            for family in (GLRP, RANDOM):
                if not (setting.model_folder(*family, 0, seed) / "checkpoint_final.pth").is_file():
                    train(setting, Training(*family, 0, seed))
    results = tmp_path / "results"
    for seed in (0, 2):
        folder, record = _recorded(per_seed, GLRP, seed)
        assert record == {"seed": seed, "pretraining_seed": seed}
        tree = results / PER_SEED_TREE if seed == 0 else results / PER_SEED_TREE / f"glrp_seed_{seed}"
        assert folder.is_relative_to(tree), folder
        shared_folder, shared_record = _recorded(shared, GLRP, seed)
        assert shared_record == {"seed": seed, "pretraining_seed": 7} and shared_folder != folder
        # Random does not depend on the pretraining: one model for both settings, the environment's seed untouched
        assert _recorded(per_seed, RANDOM, seed) == _recorded(shared, RANDOM, seed)
        assert _recorded(per_seed, RANDOM, seed)[1]["pretraining_seed"] == 7
    # every per-seed tree reads and writes the one pretraining cache (a seed = its own entry in it)
    link = results / PER_SEED_TREE / "Dataset001_X" / "glrp_pretraining"
    assert link.is_symlink() and link.resolve() == (results / "Dataset001_X" / "glrp_pretraining").resolve()
    assert "GLRP_PRETRAIN_SEED=2 " in (tmp_path / "out" / "logs" / "GLRPTrainer_k2_cpu__fold0__seed2.log").read_text()


def test_a_per_seed_folder_trained_from_another_pretraining_seed_is_refused(tmp_path):
    per_seed, shared = _setting(tmp_path, "per-seed"), _setting(tmp_path, "shared")
    for setting in (per_seed, shared):
        folder = setting.model_folder(*GLRP, 0, 2)
        folder.mkdir(parents=True)
        (folder / "glrp_finetuning.json").write_text(json.dumps({"seed": 2, "pretraining_seed": 0}))
        (folder / "checkpoint_final.pth").write_bytes(b"fake")
    with pytest.raises(ValueError, match=r"records pretraining seed 0, but this folder holds the seed-2 run of a "
                                         r"per-seed pretraining"):
        check_setup(per_seed, Training(*GLRP, 0, 2))
    check_setup(shared, Training(*GLRP, 0, 2))  # one shared encoder: any pretraining seed of the user's


def test_make_setting_and_the_output_folder_know_the_pretraining_seeds(tmp_path):
    encoder = tmp_path / "pretrained_encoder.pth"
    encoder.write_bytes(b"x")
    with pytest.raises(ValueError, match="cannot be combined with pretraining seeds 'per-seed'"):
        engine.make_setting("Dataset001_X", "2d", tmp_path / "out", pretrained_encoder=encoder,
                            pretraining_seeds="per-seed")
    with pytest.raises(ValueError, match="must be one of shared, per-seed, got 'each'"):
        engine.make_setting("Dataset001_X", "2d", tmp_path / "out", pretraining_seeds="each")
    per_seed = engine.make_setting("Dataset001_X", "2d", tmp_path / "out", pretraining_seeds="per-seed")
    assert per_seed.pretraining_seeds == "per-seed"
    # a folder written before the key existed was a shared one: reused by a shared call, refused for per-seed
    old = {k: v for k, v in engine.identity(per_seed).items() if k != "pretraining_seeds"}
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / engine.CALL_FILE).write_text(json.dumps(old))
    engine.check_out_folder(tmp_path / "out", {**old, "pretraining_seeds": "shared"})
    with pytest.raises(ValueError, match=r"belongs to another reproduction \(pretraining_seeds 'shared'\); use "
                                         r"another -o for pretraining_seeds 'per-seed'"):
        engine.check_out_folder(tmp_path / "out", engine.identity(per_seed))
