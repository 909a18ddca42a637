"""The run engine's pretraining seeds: ``shared`` (one encoder for every seed) and ``per-seed`` (seed S's
pretrained rows from pretraining seed S), with a fake ``nnUNetv2_train`` that records what the engine handed it."""

from __future__ import annotations

import json

import pytest

from fake_engine_training import (
    GLRP, RANDOM, engine_setting, install_fake_train, recorded, train_all, write_finished_folder,
)
from nnunetv2_glrp.reproduction import engine
from nnunetv2_glrp.reproduction.training import PER_SEED_TREE, Training, check_setup


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    install_fake_train(tmp_path, monkeypatch)
    monkeypatch.setenv("GLRP_PRETRAIN_SEED", "7")  # the user's own choice: what "shared" keeps


def test_per_seed_gives_each_seed_its_pretraining_seed_and_a_tree_of_its_own(tmp_path, fake_train):
    shared, per_seed = engine_setting(tmp_path, "shared"), engine_setting(tmp_path, "per-seed")
    train_all((shared, per_seed))
    results = tmp_path / "results"
    for seed in (0, 2):
        folder, record = recorded(per_seed, GLRP, seed)
        assert record == {"seed": seed, "pretraining_seed": seed, "extra_pools": [], "pretraining_epochs": None}
        tree = results / PER_SEED_TREE if seed == 0 else results / PER_SEED_TREE / f"glrp_seed_{seed}"
        assert folder.is_relative_to(tree), folder
        shared_folder, shared_record = recorded(shared, GLRP, seed)
        assert shared_record == {"seed": seed, "pretraining_seed": 7, "extra_pools": [], "pretraining_epochs": None}
        assert shared_folder != folder
        # Random does not depend on the pretraining: one model for both settings, the environment's seed untouched
        assert recorded(per_seed, RANDOM, seed) == recorded(shared, RANDOM, seed)
        assert recorded(per_seed, RANDOM, seed)[1]["pretraining_seed"] == 7
    # every per-seed tree reads and writes the one pretraining cache (a seed = its own entry in it)
    link = results / PER_SEED_TREE / "Dataset001_X" / "glrp_pretraining"
    assert link.is_symlink() and link.resolve() == (results / "Dataset001_X" / "glrp_pretraining").resolve()
    assert "GLRP_PRETRAIN_SEED=2 " in (tmp_path / "out" / "logs" / "GLRPTrainer_k2_cpu__fold0__seed2.log").read_text()


def test_a_per_seed_folder_trained_from_another_pretraining_seed_is_refused(tmp_path):
    per_seed, shared = engine_setting(tmp_path, "per-seed"), engine_setting(tmp_path, "shared")
    for setting in (per_seed, shared):
        write_finished_folder(setting, GLRP, 2, {"seed": 2, "pretraining_seed": 0})
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
