"""A whole-network checkpoint for nnU-Net's own ``nnUNetv2_train ... -pretrained_weights CKPT``.

nnU-Net's ``load_pretrained_weights`` needs ``{'network_weights': state_dict}`` holding every key of the
network it builds from the plans (segmentation layers excepted) with equal shapes. Our pretraining
writes the encoder only, so the export builds that network as plain ``nnUNetTrainer`` does
(``build_network_architecture`` from the plans, after ``torch.manual_seed(seed)``: a reproducible
initial decoder), loads the pretrained encoder into it strictly (``encoder_loading``) and saves the
whole state dict. ``glrp_export`` in the file records the seed, the encoder file and where it came from.

The encoder is the one our trainers would use: ``--encoder FILE``, else ``$GLRP_PRETRAINED_ENCODER``,
else the pretraining cache entry of the method / preset / pretraining seed (``$GLRP_EXTRA_POOLS`` as for
the trainers). Unlike the trainers, the export never pretrains: a missing cache entry is an error that
names the ``nnUNetv2_glrp pretrain`` call making it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from nnunetv2_glrp.finetuning.encoder_loading import load_encoder_state
from nnunetv2_glrp.finetuning.pretrained_source import ENCODER_ENV, extra_pools_from_environment

#: key of the export record in the checkpoint (nnU-Net reads only 'network_weights')
RECORD_KEY = "glrp_export"


def find_encoder(dataset: str | int, configuration: str, method: str, plans_identifier: str = "nnUNetPlans",
                 encoder: str | os.PathLike | None = None, preset: str = "cpu", pretraining_seed: int = 0,
                 overrides: dict | None = None) -> tuple[Path, str]:
    """(``pretrained_encoder.pth``, where it came from), checked to be ``method`` on this plans
    identifier, configuration and dataset split (ValueError naming the file otherwise)."""
    from nnunetv2_glrp.pretraining import check_named_encoder
    from nnunetv2_glrp.pretraining.api import cached_encoder

    for named, source in ((encoder, "--encoder"), (os.environ.get(ENCODER_ENV), f"named by {ENCODER_ENV}")):
        if named:
            return check_named_encoder(named, dataset, configuration, method, plans_identifier), source
    pools = extra_pools_from_environment()
    folder, path = cached_encoder(dataset, configuration, method, plans_identifier, preset, pretraining_seed,
                                  extra_pools=pools, **(overrides or {}))
    if path is None:
        pools_arg = f" --extra_pools {' '.join(pools)}" if pools else ""
        raise FileNotFoundError(
            f"no cached {method} encoder for dataset {dataset}, -c {configuration}, -p {plans_identifier} (preset "
            f"{preset}, pretraining seed {pretraining_seed}; expected in {folder}): run nnUNetv2_glrp pretrain -d "
            f"{dataset} -c {configuration} -m {method} -p {plans_identifier} --preset {preset} --seed "
            f"{pretraining_seed}{pools_arg} first, or name a pretrained_encoder.pth with --encoder")
    return path, f"pretraining cache (preset {preset!r}, pretraining seed {pretraining_seed})"


def build_initial_network(dataset: str | int, configuration: str, plans_identifier: str, seed: int):
    """The network plain ``nnUNetTrainer`` builds for this plans configuration, initialised after
    ``torch.manual_seed(seed)`` (the global torch RNG state is restored afterwards)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(os.environ["nnUNet_preprocessed"]) / maybe_convert_to_dataset_name(dataset)
    plans_file, dataset_file = folder / f"{plans_identifier}.json", folder / "dataset.json"
    for f in (plans_file, dataset_file):
        if not f.is_file():
            raise FileNotFoundError(f"no {f}: plan and preprocess the dataset first (nnUNetv2_glrp prepare)")
    plans_manager = PlansManager(json.loads(plans_file.read_text(encoding="utf-8")))
    if configuration not in plans_manager.available_configurations:
        raise ValueError(f"configuration {configuration!r} is not in {plans_file} "
                         f"(it has {', '.join(plans_manager.available_configurations)})")
    configuration_manager = plans_manager.get_configuration(configuration)
    dataset_json = json.loads(dataset_file.read_text(encoding="utf-8"))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nnUNetTrainer.build_network_architecture(
            plans_manager, configuration_manager,
            determine_num_input_channels(plans_manager, configuration_manager, dataset_json),
            plans_manager.get_label_manager(dataset_json).num_segmentation_heads, True)


def export_pretrained(dataset: str | int, configuration: str, method: str, out: str | os.PathLike,
                      plans_identifier: str = "nnUNetPlans", encoder: str | os.PathLike | None = None, seed: int = 0,
                      preset: str = "cpu", pretraining_seed: int = 0, overrides: dict | None = None) -> dict:
    """Write ``out`` (atomically) for ``nnUNetv2_train ... -pretrained_weights out``; returns its record."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from nnunetv2_glrp.pretraining import load_pretrained_encoder_state
    from nnunetv2_glrp.pretraining.checkpoint import atomic_torch_save

    path, source = find_encoder(dataset, configuration, method, plans_identifier, encoder, preset,
                                pretraining_seed, overrides)
    network = build_initial_network(dataset, configuration, plans_identifier, seed)
    loaded = load_encoder_state(network, load_pretrained_encoder_state(path), os.fspath(path))
    weights = {key: value.detach().cpu().clone() for key, value in network.state_dict().items()}
    record = {"seed": int(seed), "encoder": os.fspath(Path(path).resolve()), "encoder_source": source,
              "method": method, "dataset": maybe_convert_to_dataset_name(dataset), "configuration": configuration,
              "plans_identifier": plans_identifier, "encoder_tensors": loaded,
              "note": "encoder pretrained, decoder and segmentation layers freshly initialised with torch seed 'seed'"}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_torch_save({"network_weights": weights, RECORD_KEY: record}, out)
    return record
