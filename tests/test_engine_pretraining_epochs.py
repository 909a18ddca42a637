"""The run engine's pretraining epochs: the pretrained rows pretrain longer than the budget's preset
(``GLRP_PRETRAIN_EPOCHS``), in a results tree and an output folder of their own, with a fake ``nnUNetv2_train`` that
records what the engine handed it; and the trainer's side: the variable becomes the cache entry of
``nnUNetv2_glrp pretrain --epochs N``."""

from __future__ import annotations

import json

import pytest

from fake_engine_training import (
    GLRP, RANDOM, engine_setting, install_fake_train, recorded, train_all, write_finished_folder,
)
from nnunetv2_glrp.cli import build_parser
from nnunetv2_glrp.commands import pretrain as pretrain_command
from nnunetv2_glrp.finetuning.pretrained_source import epochs_from_environment, epochs_used, pretraining_overrides
from nnunetv2_glrp.pretraining import make_config
from nnunetv2_glrp.reproduction import engine
from nnunetv2_glrp.reproduction.training import PER_SEED_TREE, Training, check_setup


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    install_fake_train(tmp_path, monkeypatch)
    monkeypatch.setenv("GLRP_PRETRAIN_EPOCHS", "99")  # the caller's own: never what a table measured
    monkeypatch.delenv("GLRP_EXTRA_POOLS", raising=False)


def test_longer_rows_pretrain_longer_in_a_tree_of_their_own(tmp_path, fake_train):
    plain, longer = engine_setting(tmp_path), engine_setting(tmp_path, epochs=60)
    per_seed_pooled_longer = engine_setting(tmp_path, "per-seed", ("Dataset802_Y",), 60)
    train_all((plain, longer, per_seed_pooled_longer))
    results = tmp_path / "results"
    for seed in (0, 2):
        sub = "" if seed == 0 else f"glrp_seed_{seed}"
        folder, record = recorded(longer, GLRP, seed)
        assert record == {"seed": seed, "pretraining_seed": 0, "extra_pools": [], "pretraining_epochs": 60}
        assert folder.is_relative_to(results / "glrp__pretrain_60ep" / sub), folder
        folder, record = recorded(per_seed_pooled_longer, GLRP, seed)
        assert record == {"seed": seed, "pretraining_seed": seed, "extra_pools": ["Dataset802_Y"],
                          "pretraining_epochs": 60}
        assert folder.is_relative_to(results / f"{PER_SEED_TREE}__pools__Dataset802_Y__pretrain_60ep" / sub), folder
        # without epochs the caller's GLRP_PRETRAIN_EPOCHS is removed, and the rows stay in the plain tree
        folder, record = recorded(plain, GLRP, seed)
        assert record["pretraining_epochs"] is None and folder.is_relative_to(results / sub / "Dataset001_X"), folder
        # Random does not pretrain: one model for every setting, no epochs handed to it
        assert recorded(longer, RANDOM, seed) == recorded(plain, RANDOM, seed)
        assert recorded(longer, RANDOM, seed)[1]["pretraining_epochs"] is None
    link = results / "glrp__pretrain_60ep" / "Dataset001_X" / "glrp_pretraining"
    assert link.is_symlink() and link.resolve() == (results / "Dataset001_X" / "glrp_pretraining").resolve()
    log = (tmp_path / "out" / "logs" / "GLRPTrainer_k2_cpu__fold0__seed2.log").read_text()
    assert "GLRP_PRETRAIN_EPOCHS=60 " in log and "GLRP_PRETRAIN_EPOCHS=99" not in log


def test_a_finished_folder_of_other_epochs_is_refused(tmp_path):
    plain, longer = engine_setting(tmp_path), engine_setting(tmp_path, epochs=60)
    write_finished_folder(longer, GLRP, 1, {"seed": 1, "pretraining_seed": 0, "pretraining_epochs": 45})
    with pytest.raises(ValueError, match="records pretraining epochs 45, but this setting's pretraining runs 60"):
        check_setup(longer, Training(*GLRP, 0, 1))
    write_finished_folder(plain, GLRP, 1, {"seed": 1, "pretraining_seed": 0, "pretraining_epochs": 60})
    with pytest.raises(ValueError, match="records pretraining epochs 60, but this setting's pretraining runs the "
                                         "budget's preset's"):
        check_setup(plain, Training(*GLRP, 0, 1))
    write_finished_folder(plain, GLRP, 2, {"seed": 2, "pretraining_seed": 0})  # written before epochs were recorded
    check_setup(plain, Training(*GLRP, 0, 2))
    write_finished_folder(longer, GLRP, 2, {"seed": 2, "pretraining_seed": 0})
    with pytest.raises(ValueError, match="records pretraining epochs the budget's preset's, but this setting's "
                                         "pretraining runs 60"):
        check_setup(longer, Training(*GLRP, 0, 2))
    write_finished_folder(plain, RANDOM, 1, {"seed": 1, "pretraining_seed": 0, "pretraining_epochs": 60})
    check_setup(longer, Training(*RANDOM, 0, 1))  # Random's epochs do not matter: it never pretrains


def test_make_setting_checks_the_epochs_and_the_output_folder_knows_them(tmp_path, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_results", str(tmp_path / "results"))
    out = tmp_path / "out"
    setting = engine.make_setting("Dataset001_X", "2d", out, pretraining_epochs=60)
    assert setting.pretraining_epochs == 60
    with pytest.raises(ValueError, match="pretraining epochs must be a positive number, not 0"):
        engine.make_setting("Dataset001_X", "2d", out, pretraining_epochs=0)
    encoder = tmp_path / "pretrained_encoder.pth"
    encoder.write_bytes(b"x")
    with pytest.raises(ValueError, match=r"its pretraining epochs cannot be set \(60\)"):
        engine.make_setting("Dataset001_X", "2d", out, pretrained_encoder=encoder, pretraining_epochs=60)
    # a folder written before the key existed pretrained the preset's epochs: reused without, refused with 60
    old = {k: v for k, v in engine.identity(setting).items() if k != "pretraining_epochs"}
    out.mkdir()
    (out / engine.CALL_FILE).write_text(json.dumps(old))
    engine.check_out_folder(out, {**old, "pretraining_epochs": None})
    with pytest.raises(ValueError, match=r"belongs to another reproduction \(pretraining_epochs None\); use another "
                                         r"-o for pretraining_epochs 60"):
        engine.check_out_folder(out, engine.identity(setting))


def test_the_trainers_epochs_are_the_cache_entry_of_pretrain_epochs(monkeypatch):
    monkeypatch.delenv("GLRP_PRETRAIN_EPOCHS", raising=False)
    assert epochs_from_environment() is None and pretraining_overrides({"batch_size": 4}) == {"batch_size": 4}
    monkeypatch.setenv("GLRP_PRETRAIN_EPOCHS", "60")
    overrides = pretraining_overrides({})
    args = build_parser().parse_args(["pretrain", "-d", "801", "-c", "nnunet_cpu", "--epochs", "60", "--seed", "1"])
    cli = pretrain_command._overrides(args)
    trainer_config, cli_config = make_config("GLRP", "cpu", 1, **overrides), make_config("GLRP", "cpu", 1, **cli)
    assert trainer_config.epochs == 60 and trainer_config.digest() == cli_config.digest()
    assert trainer_config.digest() != make_config("GLRP", "cpu", 1).digest()  # not the preset's cache entry
    assert epochs_used() == 60
    monkeypatch.setenv("GLRP_PRETRAINED_ENCODER", "/some/pretrained_encoder.pth")  # a named encoder: epochs unused
    assert epochs_used() is None
    monkeypatch.delenv("GLRP_PRETRAINED_ENCODER")
    for bad in ("0", "-3", "sixty"):
        monkeypatch.setenv("GLRP_PRETRAIN_EPOCHS", bad)
        with pytest.raises(ValueError, match=f"GLRP_PRETRAIN_EPOCHS='{bad}': expected a positive number"):
            epochs_from_environment()
