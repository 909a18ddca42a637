"""Fine-tuning trainers on the phantom: pretraining cache, encoder loading, k patients, predict.

The end-to-end part runs nnU-Net's own commands in subprocesses (``nnUNetv2_train ... -tr
GLRPTrainer_k2_tiny -device cpu``: 1 epoch x 2 iterations after a 1 epoch x 2 iterations "cpu"
pretraining), then inspects trainers in-process with ``initialize()`` (no training).
"""

from __future__ import annotations

import json
from dataclasses import replace
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2_glrp.environment import nnunet_command
from nnunetv2_glrp.finetuning.encoder_loading import load_encoder_state, unwrap_network
from nnunetv2_glrp.finetuning.nnunet_control import CONTROL_FOLD_BASE
from nnunetv2_glrp.finetuning.recipes import (
    CPU_BUDGET, FULL_BUDGET, NNUNET_RECIPE, PAPER_RECIPE, ResolvedSchedule, recipe_for_budget,
    warmup_iterations,
)
from nnunetv2_glrp.finetuning.schedules import CosineLRScheduler, warmup_factor
from nnunet_subprocess import nnunet_env, run_checked
from tiny_trainers.glrp_tiny_trainers import TINY_BUDGET, TINY_PRETRAINING_OVERRIDES

DATASET = "Dataset901_ACDC"


# ---- unit level: encoder loading, schedules, recipes -------------------------------------------
def decoder_keys(network) -> list[str]:
    """State-dict keys of the decoder's own tensors (without the decoder's reference to the encoder)."""
    module = unwrap_network(network)
    return [key for key in module.state_dict() if key.startswith("decoder.") and not key.startswith("decoder.encoder.")]


def _tiny_unet(features=(4, 8, 16)) -> torch.nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet

    return PlainConvUNet(1, len(features), list(features), torch.nn.Conv2d, 3, [1, 2, 2], 1, 4, 1,
                         conv_bias=True, norm_op=torch.nn.BatchNorm2d, nonlin=torch.nn.ReLU)


def test_encoder_loading_is_strict_and_leaves_the_decoder_alone():
    torch.manual_seed(0)
    source, target = _tiny_unet(), _tiny_unet()
    state = source.encoder.state_dict()
    decoder_before = {k: v.clone() for k, v in target.state_dict().items() if k in decoder_keys(target)}
    n = load_encoder_state(torch.compile(target), state, "src.pth")  # unwraps OptimizedModule
    assert n == len(state) > 0
    for key, value in target.encoder.state_dict().items():
        assert torch.equal(value, state[key])
    for key, value in decoder_before.items():
        assert torch.equal(target.state_dict()[key], value)
    assert decoder_before and all(not k.startswith("decoder.encoder.") for k in decoder_before)

    missing = dict(state)
    missing.pop(next(iter(missing)))
    with pytest.raises(ValueError, match=r"src\.pth.*missing encoder tensors"):
        load_encoder_state(target, missing, "src.pth")
    with pytest.raises(ValueError, match=r"unexpected tensors.*projection\.weight"):
        load_encoder_state(target, {**state, "projection.weight": torch.zeros(3)}, "src.pth")
    other = _tiny_unet((4, 8, 32)).encoder.state_dict()
    with pytest.raises(ValueError, match="shape mismatches"):
        load_encoder_state(target, other, "src.pth")
    assert unwrap_network(torch.compile(target)) is target


def test_schedules_and_warmup():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-4)
    sched = CosineLRScheduler(opt, 5e-4, 200)
    sched.step(0)
    assert opt.param_groups[0]["lr"] == pytest.approx(5e-4)
    sched.step(100)
    assert opt.param_groups[0]["lr"] == pytest.approx(2.5e-4)
    sched.step(200)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert [warmup_factor(i, 4) for i in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert warmup_factor(0, 0) == 1.0
    assert warmup_iterations(NNUNET_RECIPE, 1000, 250) == 0  # nnU-Net's recipe has none
    assert warmup_iterations(replace(NNUNET_RECIPE, warmup_fraction=0.05), 1000, 250) == 12500  # 5 % of all
    assert warmup_iterations(PAPER_RECIPE, 200, 10) == 0


def test_budgets_override_recipes():
    assert ResolvedSchedule.of(NNUNET_RECIPE, CPU_BUDGET) == ResolvedSchedule(10, 20, 3)
    assert ResolvedSchedule.of(PAPER_RECIPE, TINY_BUDGET) == ResolvedSchedule(1, 2, 1)
    full = ResolvedSchedule.of(PAPER_RECIPE, FULL_BUDGET)
    assert (full.num_epochs, full.iterations_per_epoch) == (200, None)  # one pass per epoch
    with pytest.raises(ValueError, match="unknown loss"):
        type(NNUNET_RECIPE)(name="bad", loss="focal")


# ---- end to end on the phantom --------------------------------------------------------------
def _env() -> dict[str, str]:
    return nnunet_env(GLRP_TEST_FINAL_VALIDATION="1")  # these tests check nnU-Net's validation outputs too


def _run(args: list[str]) -> str:
    return run_checked(args, GLRP_TEST_FINAL_VALIDATION="1")


def _results() -> Path:
    return Path(os.environ["nnUNet_results"]) / DATASET


def _pretraining_folders() -> list[Path]:
    root = _results() / "glrp_pretraining"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _train(trainer: str, config: str) -> str:
    return _run([nnunet_command("nnUNetv2_train"), "901", config, "0", "-tr", trainer, "-device", "cpu"])


def _tiny_cache_entry(config: str) -> Path:
    """The pretraining cache folder of GLRPTrainer_k2_tiny (preset 'cpu', seed 0, the tiny overrides)."""
    from nnunetv2_glrp.pretraining.api import cached_encoder

    return cached_encoder(DATASET, config, "GLRP", "nnUNetPlans", "cpu", 0, **dict(TINY_PRETRAINING_OVERRIDES))[0]


@pytest.fixture(scope="module")
def trained(phantom_preprocessed):
    """GLRPTrainer_k2_tiny trained by nnUNetv2_train (once per module); other trainers run in-process.

    ``folders``: the pretraining folders this run created (other test files may have cached other
    pretrainings in the same session's results folder before)."""
    config = phantom_preprocessed
    # an earlier test file on this xdist worker (reproduce's end to end trains GLRPTrainer_k2_tiny too) may have
    # cached this very pretraining; this module checks the first one, so that entry goes first
    shutil.rmtree(_tiny_cache_entry(config), ignore_errors=True)
    before = set(_pretraining_folders())
    glrp_log = _train("GLRPTrainer_k2_tiny", config)
    folders = sorted(set(_pretraining_folders()) - before)
    encoder = folders[0] / "pretrained_encoder.pth" if folders else None
    stamp = encoder.stat().st_mtime_ns if encoder else None
    return {"config": config, "glrp_log": glrp_log, "folders": folders, "encoder": encoder, "stamp": stamp}


def _fold0(trainer: str, config: str) -> Path:
    return _results() / f"{trainer}__nnUNetPlans__{config}" / "fold_0"


def _in_process_trainer(name: str, config: str):
    from nnunetv2.run.run_training import get_trainer_from_args

    return get_trainer_from_args("901", config, 0, name, "nnUNetPlans", device=torch.device("cpu"))


def test_train_pretrains_once_and_writes_the_draw(trained):
    config = trained["config"]
    assert trained["folders"] == [_tiny_cache_entry(config)]
    from nnunetv2_glrp.pretraining import load_pretrained_encoder_state

    n = len(load_pretrained_encoder_state(trained["encoder"]))
    assert f"GLRP: loaded {n} pretrained encoder tensors (GLRP)" in trained["glrp_log"]
    assert "GLRP: GLRP encoder from the pretraining cache (preset 'cpu', seed 0); if it is missing, pretraining runs " \
           "first: 1 epochs x 2 iterations" in trained["glrp_log"]
    fold = _fold0("GLRPTrainer_k2_tiny", config)
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "validation" / "summary.json").is_file()
    setup = json.loads((fold / "glrp_finetuning.json").read_text())
    assert (setup["num_epochs"], setup["num_iterations_per_epoch"], setup["loaded_encoder_tensors"]) == (1, 2, n)
    random_ = _in_process_trainer("RandomInitTrainer_k2_tiny", config)
    before = _pretraining_folders()
    random_.initialize()  # no pretraining for the Random row
    assert random_.pretrained_encoder_path is None and _pretraining_folders() == before
    random_.do_split()  # writes its draw
    draws = [json.loads((_fold0(t, config) / "k_patients.json").read_text())
             for t in ("GLRPTrainer_k2_tiny", "RandomInitTrainer_k2_tiny")]
    assert draws[0]["patients"] == draws[1]["patients"] and len(draws[0]["patients"]) == 2
    assert draws[0]["available_patients"] == 7 and draws[0]["seed"] == 0
    assert sorted(draws[0]["cases"]) == sorted(f"{p}_{f}" for p in draws[0]["patients"] for f in ("ED", "ES"))
    splits = json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET / "splits_final.json").read_text())
    assert draws[0]["validation_cases"] == splits[0]["val"]  # validation stays the whole fold


def test_second_trainer_reuses_the_cache_and_loads_the_encoder(trained):
    from nnunetv2_glrp.pretraining import load_pretrained_encoder_state

    config = trained["config"]
    glrp = _in_process_trainer("GLRPTrainer_k6_tiny", config)
    before = _pretraining_folders()
    glrp.initialize()
    assert _pretraining_folders() == before
    assert trained["encoder"].stat().st_mtime_ns == trained["stamp"]
    assert glrp.pretrained_encoder_path == trained["encoder"]
    pretrained = load_pretrained_encoder_state(trained["encoder"])
    assert glrp.loaded_encoder_tensors == len(pretrained)
    random_ = _in_process_trainer("RandomInitTrainer_k6_tiny", config)
    random_.initialize()
    net_g, net_r = unwrap_network(glrp.network).state_dict(), unwrap_network(random_.network).state_dict()
    for key, value in pretrained.items():
        assert torch.equal(net_g[f"encoder.{key}"], value)
    weights = [k for k in pretrained if k.endswith("weight")]
    assert not all(torch.equal(net_r[f"encoder.{k}"], pretrained[k]) for k in weights)
    dec = decoder_keys(glrp.network)
    assert dec and not any(k.startswith("decoder.encoder.") for k in dec)
    # decoder: fresh init, identical to the Random trainer's at the same seed, not pretrained
    assert all(torch.equal(net_g[k], net_r[k]) for k in dec)
    # k patients: identical across methods, nested in k
    tr_g, val_g = glrp.do_split()
    tr_r, val_r = random_.do_split()
    assert tr_g == tr_r and val_g == val_r and glrp.selected_patients == random_.selected_patients
    k2 = json.loads((_fold0("GLRPTrainer_k2_tiny", config) / "k_patients.json").read_text())["patients"]
    assert glrp.selected_patients[:2] == k2 and len(set(glrp.selected_patients)) == 6


def test_named_encoder_is_used_without_pretraining_and_checked(trained, tmp_path, monkeypatch):
    """GLRP_PRETRAINED_ENCODER: the trainer starts from exactly that file (another preset's cache entry
    is never created) and says so; a file of another method or pretrained on other patients is refused."""
    config = trained["config"]
    monkeypatch.setenv("GLRP_PRETRAINED_ENCODER", os.fspath(trained["encoder"]))
    monkeypatch.setenv("GLRP_PRETRAIN_SEED", "7")  # would be a new cache entry without the named encoder
    glrp = _in_process_trainer("GLRPTrainer_k2_tiny", config)
    before = _pretraining_folders()
    glrp.initialize()
    assert _pretraining_folders() == before and glrp.pretrained_encoder_path == trained["encoder"]
    assert glrp.pretrained_encoder_source == "named by GLRP_PRETRAINED_ENCODER"
    with pytest.raises(ValueError, match=r"pretrained_encoder.pth: pretrained with method 'GLRP', but .* 'GRP'"):
        _in_process_trainer("GRPTrainer_k2_tiny", config).initialize()
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "pretrained_encoder.pth").write_bytes(trained["encoder"].read_bytes())
    record = json.loads((trained["encoder"].parent / "config.json").read_text())
    record["data"]["patients"] = record["data"]["patients"][:-1]  # pretrained on other patients
    (moved / "config.json").write_text(json.dumps(record))
    monkeypatch.setenv("GLRP_PRETRAINED_ENCODER", os.fspath(moved / "pretrained_encoder.pth"))
    with pytest.raises(ValueError, match="elsewhere: pretrained on data with patients"):
        _in_process_trainer("GLRPTrainer_k6_tiny", config).initialize()
    monkeypatch.setenv("GLRP_PRETRAINED_ENCODER", os.fspath(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        _in_process_trainer("GLRPTrainer_k6_tiny", config).initialize()


def test_pretraining_epochs_of_the_environment_pretrain_longer_and_are_recorded(trained, monkeypatch):
    """GLRP_PRETRAIN_EPOCHS: the trainer pretrains (or reuses) the cache entry of ``pretrain --epochs N``, not the
    preset's, and records N in glrp_finetuning.json (the run engine refuses a finished folder of other epochs)."""
    monkeypatch.setenv("GLRP_PRETRAIN_EPOCHS", "2")  # the tiny preset pretrains 1 epoch
    glrp = _in_process_trainer("GLRPTrainer_k2_tiny", trained["config"])
    before = set(_pretraining_folders())
    glrp.initialize()
    (folder,) = sorted(set(_pretraining_folders()) - before)
    assert glrp.pretrained_encoder_path == folder / "pretrained_encoder.pth" != trained["encoder"]
    assert json.loads((folder / "config.json").read_text())["config"]["epochs"] == 2
    glrp._write_setup()
    setup = json.loads((Path(glrp.output_folder) / "glrp_finetuning.json").read_text())
    assert setup["pretraining_epochs"] == 2 and "overrides {'epochs': 2, " in setup["pretrained_encoder_source"]
    monkeypatch.delenv("GLRP_PRETRAIN_EPOCHS")
    preset = _in_process_trainer("GLRPTrainer_k2_tiny", trained["config"])
    preset.initialize()  # the preset's entry again, recorded as no override
    preset._write_setup()
    setup = json.loads((Path(preset.output_folder) / "glrp_finetuning.json").read_text())
    assert preset.pretrained_encoder_path == trained["encoder"] and setup["pretraining_epochs"] is None


def test_paper_recipe_and_too_large_k(trained):
    from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

    trainer = _in_process_trainer("GLRPTrainer_k2_paper_tiny", trained["config"])
    before = _pretraining_folders()
    trainer.initialize()
    assert _pretraining_folders() == before  # same pretraining config: reused
    assert trainer.pretrained_encoder_path == trained["encoder"]
    assert isinstance(trainer.optimizer, torch.optim.Adam) and trainer.optimizer.param_groups[0]["lr"] == 5e-4
    assert isinstance(trainer.loss, RobustCrossEntropyLoss) and not trainer.enable_deep_supervision
    assert trainer.batch_size == 12 and trainer.num_epochs == 1
    # the paper's epoch = one pass over the k patients' labeled slices (counted from nnU-Net's gt copies)
    import SimpleITK as sitk

    gt = Path(os.environ["nnUNet_preprocessed"]) / DATASET / "gt_segmentations"
    cases, _ = trainer.do_split()
    n_slices = sum(sitk.ReadImage(os.fspath(gt / f"{c}.nii.gz")).GetSize()[2] for c in cases)
    assert trainer._one_pass_iterations() == -(-n_slices // 12)
    too_many = _in_process_trainer("RandomInitTrainer_k10_tiny", trained["config"])
    with pytest.raises(ValueError, match=r"k=10 .*only 7 training patients"):
        too_many.do_split()


def _decoder_state(trainer) -> dict[str, torch.Tensor]:
    state = unwrap_network(trainer.network).state_dict()
    return {k: state[k] for k in decoder_keys(trainer.network)}


def test_fresh_decoder_does_not_depend_on_pretraining_in_this_process(phantom_preprocessed, monkeypatch):
    """A trainer whose pretraining runs inside initialize() gets the decoder init of the Random trainer."""
    monkeypatch.setenv("GLRP_PRETRAIN_SEED", "4242")  # a pretraining no other test caches
    before = set(_pretraining_folders())
    glrp = _in_process_trainer("GLRPTrainer_k2_tiny", phantom_preprocessed)
    glrp.initialize()
    new = set(_pretraining_folders()) - before
    assert len(new) == 1 and glrp.pretrained_encoder_path == next(iter(new)) / "pretrained_encoder.pth"
    assert glrp.pretraining_seed == 4242 and glrp.seed == 0
    random_ = _in_process_trainer("RandomInitTrainer_k2_tiny", phantom_preprocessed)
    random_.initialize()
    dec_g, dec_r = _decoder_state(glrp), _decoder_state(random_)
    assert dec_g.keys() == dec_r.keys() and any(k.endswith("weight") for k in dec_g)
    assert all(torch.equal(dec_g[k], dec_r[k]) for k in dec_g)


def _split_trainer(config: str, tmp_path: Path, monkeypatch):
    """RandomInitTrainer_k2_tiny whose preprocessed base (splits) and output folder live under tmp_path."""
    trainer = _in_process_trainer("RandomInitTrainer_k2_tiny", config)
    monkeypatch.setenv("nnUNet_preprocessed", os.fspath(tmp_path / "preprocessed"))  # where write_splits_final writes
    trainer.preprocessed_dataset_folder_base = os.fspath(tmp_path / "preprocessed" / DATASET)
    trainer.output_folder = os.fspath(tmp_path / "fold_0")
    return trainer, tmp_path / "preprocessed" / DATASET / "splits_final.json"


def test_do_split_writes_a_missing_split_per_patient(phantom_preprocessed, tmp_path, monkeypatch):
    real = json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET / "splits_final.json").read_text())
    trainer, splits_file = _split_trainer(phantom_preprocessed, tmp_path, monkeypatch)
    assert not splits_file.exists()
    tr, val = trainer.do_split()  # nnU-Net alone would write a per-case 5-fold split here
    folds = json.loads(splits_file.read_text())
    # the converter's patient-level folds 0-4, fold 0 = the GLRP train/val split (an earlier test file on this
    # worker, reproduce's end to end, may have appended nnU-Net control folds from CONTROL_FOLD_BASE on)
    assert len(real[:CONTROL_FOLD_BASE]) == CONTROL_FOLD_BASE and folds == real[:CONTROL_FOLD_BASE]
    patients = lambda cases: {c.rsplit("_", 1)[0] for c in cases}  # noqa: E731
    assert all(not patients(f["train"]) & patients(f["val"]) for f in folds)
    assert val == folds[0]["val"] and set(tr) <= set(folds[0]["train"]) and len(patients(tr)) == 2


def test_do_split_refuses_a_patient_on_both_sides(phantom_preprocessed, tmp_path, monkeypatch):
    real = json.loads((Path(os.environ["nnUNet_preprocessed"]) / DATASET / "splits_final.json").read_text())
    trainer, splits_file = _split_trainer(phantom_preprocessed, tmp_path, monkeypatch)
    moved = next(c for c in real[0]["train"] if c.endswith("_ES"))  # ES of a training patient to validation
    splits_file.parent.mkdir(parents=True)
    splits_file.write_text(json.dumps([{"train": [c for c in real[0]["train"] if c != moved],
                                        "val": real[0]["val"] + [moved]}]))
    patient = moved[: -len("_ES")]
    with pytest.raises(ValueError, match=rf"fold 0 of .*splits_final\.json is not patient-level.*{patient}: "
                                         rf"train \['{patient}_ED'\], val \['{moved}'\]"):
        trainer.do_split()
    assert not (tmp_path / "fold_0" / "k_patients.json").exists()


def test_predict_writes_labels_and_probabilities(trained, phantom_raw_dataset, tmp_path):
    images = Path(phantom_raw_dataset) / "imagesTs"
    cases = sorted({p.name[: -len("_0000.nii.gz")] for p in images.glob("*_0000.nii.gz")})
    assert cases
    _run([nnunet_command("nnUNetv2_predict"), "-i", os.fspath(images), "-o", os.fspath(tmp_path), "-d", "901",
          "-c", trained["config"], "-f", "0", "-tr", "GLRPTrainer_k2_tiny", "-chk", "checkpoint_final.pth",
          "--save_probabilities", "-device", "cpu", "-npp", "1", "-nps", "1"])
    for case in cases:
        assert (tmp_path / f"{case}.nii.gz").is_file()
        probs = np.load(tmp_path / f"{case}.npz")["probabilities"]
        assert probs.shape[0] == 4 and np.allclose(probs.sum(0), 1.0, atol=1e-3)


_DDP_RANK = """
import os, sys
import torch.distributed as dist
dist.init_process_group("gloo", rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]))
from nnunetv2_glrp.finetuning.pretrained_source import obtain_pretrained_encoder
path, _ = obtain_pretrained_encoder("Dataset901_ACDC", sys.argv[1], "GRP", "nnUNetPlans", "cpu", "cpu", 1,
                                    TINY_OVERRIDES)
print("PATH", path, flush=True)
dist.destroy_process_group()
""".replace("TINY_OVERRIDES", repr(dict(TINY_PRETRAINING_OVERRIDES)))


def test_ranks_of_a_process_group_pretrain_once(trained):
    """Two gloo ranks ask for the same (not yet cached) encoder at once: one pretrains, both get it."""
    import socket
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    before = set(_pretraining_folders())
    procs = []
    for rank in range(2):
        env = dict(_env(), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2")
        procs.append(subprocess.Popen([sys.executable, "-c", _DDP_RANK, trained["config"]], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, encoding="utf-8", errors="replace"))
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), "\n".join(o[-2000:] for o in outputs)
    paths = {line.split(" ", 1)[1] for o in outputs for line in o.splitlines() if line.startswith("PATH ")}
    new = set(_pretraining_folders()) - before
    assert len(paths) == 1 and len(new) == 1 and next(iter(new)).name.startswith("GRP__")
    assert Path(next(iter(paths))) == next(iter(new)) / "pretrained_encoder.pth"
    log = (next(iter(new)) / "log.txt").read_text()
    assert log.count("finished:") == 1  # pretrained by one rank only


def test_cpu_budget_runs_nnunet_recipe_with_adam_and_leaves_the_paper_recipe_alone():
    cpu_nnunet = recipe_for_budget(NNUNET_RECIPE, CPU_BUDGET)
    assert (cpu_nnunet.optimizer, cpu_nnunet.initial_lr) == ("adam", 1e-3)
    assert cpu_nnunet.loss == NNUNET_RECIPE.loss and cpu_nnunet.schedule == NNUNET_RECIPE.schedule
    assert recipe_for_budget(PAPER_RECIPE, CPU_BUDGET) == PAPER_RECIPE
    assert recipe_for_budget(NNUNET_RECIPE, FULL_BUDGET) == NNUNET_RECIPE
