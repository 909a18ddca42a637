"""The run engine's extra pretraining pools: the pretrained rows' pretraining adds other converted datasets' frames
(``GLRP_EXTRA_POOLS``), in a results tree and an output folder of their own, with a fake ``nnUNetv2_train`` that
records what the engine handed it."""

from __future__ import annotations

import json
import os

import pytest

from fake_engine_training import (
    GLRP, RANDOM, engine_setting, install_fake_train, recorded, train_all, write_finished_folder,
)
from nnunetv2_glrp.finetuning.pretrained_source import pools_used
from nnunetv2_glrp.reproduction import engine
from nnunetv2_glrp.reproduction.training import PER_SEED_TREE, Training, check_setup

POOL = "Dataset802_Y"


@pytest.fixture
def raw(tmp_path, monkeypatch):
    """$nnUNet_raw with the target Dataset001_X and the converted pool Dataset802_Y (a glrp_split.json)."""
    raw = tmp_path / "raw"
    (raw / "Dataset001_X").mkdir(parents=True)
    (raw / POOL).mkdir()
    split = {"format_version": 1, "split": "1:1:1", "seed": 0, "train": ["a"], "val": ["b"], "test": ["c"],
             "cases": {f"{p}_ED": {"patient": p, "set": s, "kind": "labeled"}
                       for p, s in (("a", "train"), ("b", "val"), ("c", "test"))}}
    (raw / POOL / "glrp_split.json").write_text(json.dumps(split))
    (raw / "Dataset803_Z").mkdir()  # a folder that this package did not convert
    monkeypatch.setenv("nnUNet_raw", os.fspath(raw))
    monkeypatch.setenv("nnUNet_results", os.fspath(tmp_path / "results"))
    monkeypatch.setenv("nnUNet_preprocessed", os.fspath(tmp_path / "preprocessed"))
    return raw


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    install_fake_train(tmp_path, monkeypatch)
    monkeypatch.setenv("GLRP_EXTRA_POOLS", "Dataset777_Caller")  # the caller's own: never what a table measured


def test_pooled_rows_pretrain_with_the_pools_in_a_tree_of_their_own(tmp_path, fake_train):
    plain, pooled = engine_setting(tmp_path), engine_setting(tmp_path, pools=(POOL,))
    per_seed_pooled = engine_setting(tmp_path, "per-seed", (POOL,))
    train_all((plain, pooled, per_seed_pooled))
    results = tmp_path / "results"
    for seed in (0, 2):
        sub = "" if seed == 0 else f"glrp_seed_{seed}"
        folder, record = recorded(pooled, GLRP, seed)
        assert record == {"seed": seed, "pretraining_seed": 0, "extra_pools": [POOL], "pretraining_epochs": None}
        assert folder.is_relative_to(results / f"glrp__pools__{POOL}" / sub), folder
        folder, record = recorded(per_seed_pooled, GLRP, seed)
        assert record == {"seed": seed, "pretraining_seed": seed, "extra_pools": [POOL], "pretraining_epochs": None}
        assert folder.is_relative_to(results / f"{PER_SEED_TREE}__pools__{POOL}" / sub), folder
        # without pools the caller's GLRP_EXTRA_POOLS is removed, and the rows stay in the plain tree
        folder, record = recorded(plain, GLRP, seed)
        assert record["extra_pools"] == [] and not folder.is_relative_to(results / f"glrp__pools__{POOL}")
        # Random does not pretrain: one model for every setting, no pools handed to it
        assert recorded(pooled, RANDOM, seed) == recorded(plain, RANDOM, seed)
        assert recorded(pooled, RANDOM, seed)[1]["extra_pools"] == []
    link = results / f"glrp__pools__{POOL}" / "Dataset001_X" / "glrp_pretraining"
    assert link.is_symlink() and link.resolve() == (results / "Dataset001_X" / "glrp_pretraining").resolve()
    log = (tmp_path / "out" / "logs" / "GLRPTrainer_k2_cpu__fold0__seed2.log").read_text()
    assert f"GLRP_EXTRA_POOLS={POOL} " in log


def test_a_finished_folder_of_other_pools_is_refused(tmp_path):
    plain, pooled = engine_setting(tmp_path), engine_setting(tmp_path, pools=(POOL,))
    write_finished_folder(pooled, GLRP, 1, {"seed": 1, "pretraining_seed": 0, "extra_pools": []})
    with pytest.raises(ValueError, match=rf"records extra pretraining pools none, but this setting's pretraining "
                                         rf"uses \['{POOL}'\]"):
        check_setup(pooled, Training(*GLRP, 0, 1))
    write_finished_folder(plain, GLRP, 1, {"seed": 1, "pretraining_seed": 0, "extra_pools": [POOL]})
    with pytest.raises(ValueError, match=rf"records extra pretraining pools \['{POOL}'\], but this setting's "
                                         r"pretraining uses none"):
        check_setup(plain, Training(*GLRP, 0, 1))
    write_finished_folder(plain, GLRP, 2, {"seed": 2, "pretraining_seed": 0})  # written before pools were recorded
    check_setup(plain, Training(*GLRP, 0, 2))
    write_finished_folder(plain, RANDOM, 1, {"seed": 1, "pretraining_seed": 0, "extra_pools": [POOL]})
    check_setup(pooled, Training(*RANDOM, 0, 1))  # Random's pools do not matter: it never pretrains


def test_make_setting_resolves_and_checks_the_pools_and_the_output_folder_knows_them(tmp_path, raw):
    out = tmp_path / "out"
    setting = engine.make_setting("Dataset001_X", "2d", out, extra_pools=["802"])
    assert setting.extra_pools == (POOL,)
    with pytest.raises(ValueError, match="Dataset001_X is the target dataset itself"):
        engine.make_setting("Dataset001_X", "2d", out, extra_pools=["Dataset001_X"])
    with pytest.raises(FileNotFoundError, match=r"extra pretraining pool Dataset803_Z: .*glrp_split.json not found"):
        engine.make_setting("Dataset001_X", "2d", out, extra_pools=["803"])
    encoder = tmp_path / "pretrained_encoder.pth"
    encoder.write_bytes(b"x")
    with pytest.raises(ValueError, match="extra pretraining pools \\(802\\) cannot be added to it"):
        engine.make_setting("Dataset001_X", "2d", out, pretrained_encoder=encoder, extra_pools=["802"])
    # a folder written before the key existed had no pools: reused without them, refused with them
    old = {k: v for k, v in engine.identity(setting).items() if k != "extra_pools"}
    out.mkdir()
    (out / engine.CALL_FILE).write_text(json.dumps(old))
    engine.check_out_folder(out, {**old, "extra_pools": []})
    with pytest.raises(ValueError, match=rf"belongs to another reproduction \(extra_pools \[\]\); use another -o "
                                         rf"for extra_pools \['{POOL}'\]"):
        engine.check_out_folder(out, engine.identity(setting))


def test_the_trainer_records_the_pools_it_pretrained_with(raw, monkeypatch):
    monkeypatch.delenv("GLRP_PRETRAINED_ENCODER", raising=False)
    monkeypatch.delenv("GLRP_EXTRA_POOLS", raising=False)
    assert pools_used("Dataset001_X") == ()
    monkeypatch.setenv("GLRP_EXTRA_POOLS", "802")
    assert pools_used("Dataset001_X") == (POOL,)
    monkeypatch.setenv("GLRP_PRETRAINED_ENCODER", "/some/pretrained_encoder.pth")  # a named encoder: pools unused
    assert pools_used("Dataset001_X") == ()
