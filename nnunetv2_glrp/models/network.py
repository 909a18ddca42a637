"""Build nnU-Net's segmentation network from a plans file, exactly as nnU-Net's trainer does.

The network is the one ``nnUNetTrainer.build_network_architecture`` builds (``get_network_from_plans``
with the configuration's architecture, input channels from ``determine_num_input_channels`` and one
output per segmentation head), so an encoder state dict taken from it loads into the fine-tuning
trainer's network without renaming. Deep supervision is left at the plans' default (on), as in
training; pretraining only runs ``network.encoder``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from torch import nn


@dataclass(frozen=True)
class PlansContext:
    """Everything about one dataset/plans/configuration that pretraining needs."""

    dataset_name: str
    plans_identifier: str
    configuration: str
    preprocessed_dataset_folder: Path
    plans_manager: object  # nnunetv2 PlansManager
    configuration_manager: object  # nnunetv2 ConfigurationManager
    dataset_json: dict

    @property
    def data_folder(self) -> Path:
        return self.preprocessed_dataset_folder / self.configuration_manager.data_identifier

    @property
    def patch_size(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.configuration_manager.patch_size)


def load_plans_context(dataset_name_or_id: str | int, configuration: str,
                       plans_identifier: str = "nnUNetPlans") -> PlansContext:
    """Read ``$nnUNet_preprocessed/<Dataset>/<plans_identifier>.json`` and ``dataset.json``.

    Raises FileNotFoundError naming the missing file and ValueError for an unknown configuration.
    """
    from batchgenerators.utilities.file_and_folder_operations import load_json
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    dataset_name = maybe_convert_to_dataset_name(dataset_name_or_id)
    folder = Path(os.environ["nnUNet_preprocessed"]) / dataset_name
    plans_file = folder / f"{plans_identifier}.json"
    dataset_json_file = folder / "dataset.json"
    for f in (plans_file, dataset_json_file):
        if not f.is_file():
            raise FileNotFoundError(f"{f} not found: plan and preprocess dataset {dataset_name} first "
                                    "(nnUNetv2_glrp prepare)")
    plans_manager = PlansManager(load_json(os.fspath(plans_file)))
    if configuration not in plans_manager.available_configurations:
        raise ValueError(f"configuration {configuration!r} not in {plans_file}; available: "
                         f"{plans_manager.available_configurations}")
    return PlansContext(dataset_name, plans_identifier, configuration, folder, plans_manager,
                        plans_manager.get_configuration(configuration), load_json(os.fspath(dataset_json_file)))


def build_network(ctx: PlansContext) -> nn.Module:
    """nnU-Net's network for ``ctx`` (initialised with the architecture's own ``initialize``)."""
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels

    cm = ctx.configuration_manager
    n_in = determine_num_input_channels(ctx.plans_manager, cm, ctx.dataset_json)
    n_out = ctx.plans_manager.get_label_manager(ctx.dataset_json).num_segmentation_heads
    network = get_network_from_plans(cm.network_arch_class_name, cm.network_arch_init_kwargs,
                                      cm.network_arch_init_kwargs_req_import, n_in, n_out,
                                      allow_init=True, deep_supervision=True)
    if not hasattr(network, "encoder"):
        raise ValueError(f"network class {cm.network_arch_class_name} has no .encoder: GLRP pretraining "
                         "needs an encoder/decoder architecture from dynamic_network_architectures")
    return network
