"""``export-pretrained``: a checkpoint nnU-Net's own ``load_pretrained_weights`` / ``nnUNetv2_train
-pretrained_weights`` accepts, holding exactly our pretrained encoder and a seeded initial decoder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from nnunet_subprocess import nnunet_env
from nnunetv2_glrp.cli import main
from nnunetv2_glrp.environment import nnunet_command
from nnunetv2_glrp.finetuning.export import RECORD_KEY, build_initial_network, export_pretrained
from nnunetv2_glrp.pretraining import ensure_pretrained, load_pretrained_encoder_state

DATASET = "Dataset901_ACDC"
#: the tiny trainers' pretraining (tests/tiny_trainers): likely cached already by other test files
TINY = {"epochs": 1, "iterations_per_epoch": 2, "batch_size": 4}


@pytest.fixture(scope="module")
def encoder(phantom_preprocessed):
    return phantom_preprocessed, ensure_pretrained(901, phantom_preprocessed, method="GLRP", preset="cpu", seed=0,
                                                   **TINY)


def _fresh_nnunet_network(config: str):
    """The network plain nnUNetTrainer builds in nnUNetv2_train, before any pretrained weights."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    folder = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    plans = json.loads((folder / "nnUNetPlans.json").read_text(encoding="utf-8"))
    dataset_json = json.loads((folder / "dataset.json").read_text(encoding="utf-8"))
    plans["continue_training"] = False  # what nnUNetv2_train adds before building a trainer
    trainer = nnUNetTrainer(plans, config, 0, dataset_json, torch.device("cpu"))
    trainer.initialize()
    return trainer.network


def test_nnunets_loader_takes_exactly_the_pretrained_encoder_and_the_seeded_decoder(encoder, tmp_path, capsys,
                                                                                      monkeypatch):
    from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

    monkeypatch.setenv("nnUNet_compile", "false")
    config, path = encoder
    ckpt = tmp_path / "glrp.pth"
    assert main(["export-pretrained", "-d", "901", "-c", config, "-m", "GLRP", "--encoder", str(path),
                 "--seed", "3", "-o", str(ckpt)]) == 0
    printed = capsys.readouterr().out
    assert "seed 3" in printed and os.fspath(Path(path).resolve()) in printed
    blob = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert blob[RECORD_KEY]["seed"] == 3 and blob[RECORD_KEY]["encoder_source"] == "--encoder"

    network = _fresh_nnunet_network(config)
    pretrained = load_pretrained_encoder_state(path)
    before = network.encoder.state_dict()
    assert any(not torch.equal(before[k], v) for k, v in pretrained.items())  # loading must change something
    load_pretrained_weights(network, os.fspath(ckpt))
    loaded = network.encoder.state_dict()
    assert sorted(loaded) == sorted(pretrained)
    for key, value in pretrained.items():
        assert torch.equal(loaded[key], value), key

    seeded = build_initial_network(901, config, "nnUNetPlans", 3).state_dict()
    other = build_initial_network(901, config, "nnUNetPlans", 4).state_dict()
    decoder = {k: v for k, v in network.state_dict().items()
               if k.startswith("decoder.") and not k.startswith("decoder.encoder.") and ".seg_layers." not in k
               and v.is_floating_point()}
    assert decoder
    assert all(torch.equal(v, seeded[k]) for k, v in decoder.items())  # the file's decoder is seed 3's
    assert any(not torch.equal(v, other[k]) for k, v in decoder.items())  # and the seed matters


def test_the_cache_is_found_as_the_trainers_find_it_and_a_missing_entry_names_the_pretrain_call(encoder, tmp_path):
    config, path = encoder
    record = export_pretrained(901, config, "GLRP", tmp_path / "cached.pth", overrides=TINY)
    assert record["encoder"] == os.fspath(Path(path).resolve()) and "pretraining cache" in record["encoder_source"]
    with pytest.raises(FileNotFoundError, match=rf"no cached GLRP encoder .*run nnUNetv2_glrp pretrain -d 901 -c "
                                                rf"{config} -m GLRP -p nnUNetPlans --preset cpu --seed 99"):
        export_pretrained(901, config, "GLRP", tmp_path / "missing.pth", pretraining_seed=99, overrides=TINY)
    assert not (tmp_path / "missing.pth").exists()


def _other_2d_configuration(config: str) -> str:
    plans = json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET / "nnUNetPlans.json").read_text())
    return next(c for c, v in plans["configurations"].items()
                if c != config and len(v.get("patch_size", ())) == 2 and "inherits_from" not in v)


def test_a_wrong_configuration_is_a_clear_error(encoder, tmp_path, capsys):
    config, path = encoder
    other = _other_2d_configuration(config)
    out = tmp_path / "wrong.pth"
    assert main(["export-pretrained", "-d", "901", "-c", other, "--encoder", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"pretrained with configuration '{config}', but this fine-tuning needs '{other}'" in err and path.name in err
    # an encoder whose record claims the other configuration still has to fit that network, tensor for tensor
    relabelled = tmp_path / "relabelled" / "pretrained_encoder.pth"
    relabelled.parent.mkdir()
    shutil.copy(Path(path).parent / "config.json", relabelled.parent / "config.json")
    blob = torch.load(path, map_location="cpu", weights_only=False)
    torch.save({**blob, "configuration": other}, relabelled)
    assert main(["export-pretrained", "-d", "901", "-c", other, "--encoder", str(relabelled), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"pretrained encoder {relabelled} does not fit this network" in err
    assert not out.exists()


def test_nnunetv2_train_plain_trainer_accepts_the_export(encoder, tmp_path):
    config, path = encoder
    ckpt = tmp_path / "glrp.pth"
    export_pretrained(901, config, "GLRP", ckpt, encoder=path, seed=0)
    out = subprocess.run([nnunet_command("nnUNetv2_train"), "901", config, "0", "-tr", "nnUNetTrainer_tiny",
                          "-device", "cpu", "-pretrained_weights", os.fspath(ckpt)],
                         env=nnunet_env(), capture_output=True, encoding="utf-8", errors="replace", timeout=900)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "Loading pretrained weights from file" in out.stdout
    fold = Path(os.environ["nnUNet_results"]) / DATASET / f"nnUNetTrainer_tiny__nnUNetPlans__{config}" / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()


def test_a_damaged_encoder_file_is_a_one_line_error_naming_it(encoder, tmp_path, capsys):
    config, path = encoder
    damaged = tmp_path / "pretrained_encoder.pth"
    data = Path(path).read_bytes()
    damaged.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out.pth"
    assert main(["export-pretrained", "-d", "901", "-c", config, "--encoder", str(damaged), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert f"pretrained encoder {damaged} cannot be read: the file is corrupt or incomplete" in err
    assert not out.exists()
