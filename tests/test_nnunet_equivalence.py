"""The plugin's fine-tuning trainer costs nothing: without pretraining it IS nnU-Net's trainer.

Both trainers run in this process on the session phantom with the same seeds and single-threaded
augmentation (``nnUNet_n_proc_DA=0``, set by conftest), for two short epochs. nnU-Net's side is its
unmodified ``nnUNetTrainer``, only shortened; the plugin's side is ``GLRPFineTuningTrainer`` with no
pretraining, all training patients and its default (nnU-Net) recipe, equally shortened. Every training loss and
every weight afterwards must be identical; anything the plugin changed in data, split, network
initialisation, loss, optimizer or schedule would show here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from phantom_trainer import build_started_trainer

from nnunetv2_glrp.finetuning.recipes import NNUNET_RECIPE, FineTuningBudget
from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer

EPOCHS, ITERATIONS = 2, 3


class NnunetShort(nnUNetTrainer):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):  # nnU-Net records these names: no *args
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = EPOCHS, ITERATIONS, 1


class PluginRandomShort(GLRPFineTuningTrainer):
    pretraining_method = None
    k_labeled = None
    recipe = NNUNET_RECIPE  # the default recipe, unchanged
    budget = FineTuningBudget(name="equivalence", num_epochs=EPOCHS, iterations_per_epoch=ITERATIONS,
                              val_iterations_per_epoch=1)


def _train(cls: type, config: str) -> tuple[list[float], dict[str, torch.Tensor], list[float]]:
    trainer = build_started_trainer(cls, config)
    losses, lrs = [], []
    for epoch in range(EPOCHS):
        trainer.current_epoch = epoch
        trainer.on_train_epoch_start()
        for _ in range(ITERATIONS):
            losses.append(float(trainer.train_step(next(trainer.dataloader_train))["loss"]))
            lrs.append(trainer.optimizer.param_groups[0]["lr"])
    return losses, {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}, lrs


def test_random_init_follows_nnunet_trainer_exactly(phantom_preprocessed):
    monkey_seed = os.environ.pop("GLRP_SEED", None)
    try:
        nnunet_losses, nnunet_state, nnunet_lrs = _train(NnunetShort, phantom_preprocessed)
        plugin_losses, plugin_state, plugin_lrs = _train(PluginRandomShort, phantom_preprocessed)
    finally:
        if monkey_seed is not None:
            os.environ["GLRP_SEED"] = monkey_seed
    assert len(set(nnunet_losses)) == len(nnunet_losses)  # the batches differ: the comparison below means something
    assert plugin_losses == nnunet_losses
    assert plugin_lrs == nnunet_lrs and nnunet_lrs[0] == 1e-2 and nnunet_lrs[-1] < 1e-2
    assert plugin_state.keys() == nnunet_state.keys()
    assert all(torch.equal(plugin_state[k], nnunet_state[k]) for k in nnunet_state)


def test_control_folds_hold_the_plugins_draw_and_keep_their_index(phantom_preprocessed, tmp_path):
    import shutil

    from nnunetv2_glrp.dataset_split import read_cases_table
    from nnunetv2_glrp.finetuning.nnunet_control import CONTROL_FOLD_BASE, write_control_folds
    from nnunetv2_glrp.finetuning.patient_draw import select_cases

    source = Path(os.environ["nnUNet_preprocessed"]) / "Dataset901_ACDC"
    for name in ("splits_final.json", "glrp_split.json"):
        shutil.copy(source / name, tmp_path / name)
    # nnU-Net's own folds only (the run engine's tests may have appended control folds to the session's file)
    original = json.loads((tmp_path / "splits_final.json").read_text())[:CONTROL_FOLD_BASE]
    (tmp_path / "splits_final.json").write_text(json.dumps(original))
    first = write_control_folds(tmp_path, [2], [0, 1])
    assert first == {(2, 0): CONTROL_FOLD_BASE, (2, 1): CONTROL_FOLD_BASE + 1}
    again = write_control_folds(tmp_path, [2, 6], [1, 0])  # other order, more cells: known folds keep their index
    assert again[(2, 0)] == first[(2, 0)] and again[(2, 1)] == first[(2, 1)]
    splits = json.loads((tmp_path / "splits_final.json").read_text())
    assert splits[:CONTROL_FOLD_BASE] == original[:CONTROL_FOLD_BASE] and len(splits) == CONTROL_FOLD_BASE + 4
    table = read_cases_table(tmp_path)
    for (k, seed), index in again.items():
        patients, cases = select_cases(original[0]["train"], k, 0, seed, table)
        assert splits[index] == {"train": cases, "val": original[0]["val"]} and len(patients) == k
    assert set(splits[again[(2, 0)]]["train"]) < set(splits[again[(6, 0)]]["train"])  # nested across k


def _initial_weights(name: str, config: str, seed: int, monkeypatch) -> dict[str, torch.Tensor]:
    from nnunetv2.run.run_training import get_trainer_from_args

    monkeypatch.setenv("GLRP_SEED", str(seed))
    torch.manual_seed(12345)  # whatever state the process is in: the trainer must seed itself
    trainer = get_trainer_from_args("901", config, 0, name, "nnUNetPlans", device=torch.device("cpu"))
    trainer.initialize()
    return {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}


def test_control_trainer_is_seeded_like_the_plugins_trainers(phantom_preprocessed, monkeypatch):
    """nnU-Net never seeds (every run starts from torch's default seed); the benchmark's control row must
    vary its initialisation with GLRP_SEED exactly as RandomInit does, or one draw of the initial
    weights is shared by all its seeds."""
    control_3 = _initial_weights("NnunetControlTrainer_cpu", phantom_preprocessed, 3, monkeypatch)
    random_3 = _initial_weights("RandomInitTrainer_cpu", phantom_preprocessed, 3, monkeypatch)
    control_4 = _initial_weights("NnunetControlTrainer_cpu", phantom_preprocessed, 4, monkeypatch)
    assert control_3.keys() == random_3.keys()
    assert all(torch.equal(control_3[k], random_3[k]) for k in control_3)
    weights = [k for k in control_3 if k.endswith("weight") and control_3[k].ndim > 1]
    assert weights and not any(torch.equal(control_3[k], control_4[k]) for k in weights)
