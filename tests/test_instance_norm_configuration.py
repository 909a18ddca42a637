"""Pretraining, encoder loading and fine-tuning on nnU-Net's own InstanceNorm + LeakyReLU design (``nnunet_cpu``).

The rest of the suite runs on ``paper_unet_cpu`` (BatchNorm + ReLU); this file repeats what matters on the
configuration nnU-Net plans by itself, where average-pooled features carry almost nothing (see
models/heads.py), and checks that preparing the second configuration leaves the first intact.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import torch

from nnunetv2_glrp.environment import nnunet_command
from nnunetv2_glrp.pretraining import make_config
from nnunetv2_glrp.pretraining.inputs import build_models, pretraining_records, psm_function
from nnunetv2_glrp.pretraining.step import training_step
from test_finetuning import _run

DATASET = "Dataset901_ACDC"


def test_both_configurations_are_prepared_side_by_side(phantom_preprocessed, phantom_preprocessed_nnunet):
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    folder = Path(os.environ["nnUNet_preprocessed"]) / DATASET
    plans = PlansManager(json.loads((folder / "nnUNetPlans.json").read_text()))
    norms = {c: plans.get_configuration(c).network_arch_init_kwargs["norm_op"]
             for c in (phantom_preprocessed, phantom_preprocessed_nnunet)}
    assert norms == {"paper_unet_cpu": "torch.nn.modules.batchnorm.BatchNorm2d",
                     "nnunet_cpu": "torch.nn.modules.instancenorm.InstanceNorm2d"}
    for config in norms:
        assert list((folder / f"nnUNetPlans_{config}").glob("*.pkl")), config
        assert list((folder / f"nnUNetPlans_{config}_unlabeled").glob("*.pkl")), config


def test_grp_loss_falls_below_uniform_on_the_instance_norm_network(phantom_preprocessed_nnunet):
    """The real pretraining step on nnU-Net's InstanceNorm network built from the plans, on one fixed batch:
    GRP falls below ln(2N - 1), the loss of embeddings that cannot tell the slices apart."""
    from nnunetv2_glrp.data import PretrainingSliceLoader
    from nnunetv2_glrp.models import load_plans_context

    torch.set_num_threads(1)
    ctx = load_plans_context(901, phantom_preprocessed_nnunet)
    config = make_config("GRP", batch_size=6, epochs=1, iterations_per_epoch=1)
    records, _ = pretraining_records(ctx)
    torch.manual_seed(0)
    network, heads, stage = build_models(ctx, config)
    assert isinstance(network.encoder.stages[0][0].convs[0].norm, torch.nn.InstanceNorm2d)
    loader = PretrainingSliceLoader(records, config.batch_size, ctx.patch_size, seed=0,
                                    psm_fn=psm_function(ctx, config, stage))
    optimizer = torch.optim.SGD(list(network.encoder.parameters()) + list(heads.parameters()), lr=config.lr,
                                momentum=config.momentum, weight_decay=config.weight_decay)
    batch = loader.generate_train_batch()  # one fixed batch of 6 phantom slices, 2 views each
    losses = [training_step(network, heads, batch, config, optimizer, torch.device("cpu")) for _ in range(20)]
    uniform = math.log(2 * config.batch_size - 1)
    assert np.mean([l["grp"] for l in losses[-4:]]) < uniform - 0.1, [round(l["grp"], 3) for l in losses]


def test_glrp_fine_tuning_loads_the_encoder_on_the_instance_norm_configuration(phantom_preprocessed_nnunet):
    out = _run([nnunet_command("nnUNetv2_train"), "901", phantom_preprocessed_nnunet, "0", "-tr", "GLRPTrainer_k2_tiny",
                "-device", "cpu"])
    fold = Path(os.environ["nnUNet_results"]) / DATASET / f"GLRPTrainer_k2_tiny__nnUNetPlans__{phantom_preprocessed_nnunet}" / "fold_0"
    setup = json.loads((fold / "glrp_finetuning.json").read_text())
    assert setup["loaded_encoder_tensors"] > 0 and f"loaded {setup['loaded_encoder_tensors']} pretrained" in out
    assert (fold / "checkpoint_final.pth").is_file()
    from nnunetv2_glrp.pretraining import load_pretrained_encoder_state

    state = load_pretrained_encoder_state(setup["pretrained_encoder"])
    trained = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    # the InstanceNorm affine weights start at 1 in a fresh network; pretraining moved them, and after two
    # fine-tuning steps the network still sits next to the pretrained values, far from the fresh ones
    norm_keys = [k for k in state if ".norm." in k and k.endswith("weight")]
    assert norm_keys
    pretrained = torch.cat([state[k].flatten() for k in norm_keys])
    finetuned = torch.cat([trained[f"encoder.{k}"].flatten() for k in norm_keys])
    assert (pretrained - 1).abs().max() > 1e-3
    assert (finetuned - pretrained).abs().max() < 0.5 * (pretrained - 1).abs().max()
