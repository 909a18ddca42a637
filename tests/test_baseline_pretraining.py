"""SimCLR, GCL and PCL in the shared pretraining phase: config, step = the pure loss, falling loss, cache,
fine-tuning through nnU-Net's trainer lookup and ``nnUNetv2_train``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nnunetv2_glrp.losses import global_contrastive_loss, positional_contrastive_loss, simclr_loss
from nnunetv2_glrp.pretraining import ensure_pretrained, load_pretrained_encoder_state, make_config
from nnunetv2_glrp.pretraining import api as pretraining_api
from nnunetv2_glrp.pretraining.inputs import build_models, pretraining_records
from nnunetv2_glrp.pretraining.methods import batch_sampler
from nnunetv2_glrp.pretraining.step import StepTimer, training_step
from tiny_trainers.glrp_tiny_trainers import TINY_PRETRAINING_OVERRIDES

BASELINES = ("SimCLR", "GCL", "PCL")


@pytest.fixture(scope="module")
def ctx(phantom_preprocessed):
    from nnunetv2_glrp.models import load_plans_context

    torch.set_num_threads(1)
    return load_plans_context(901, phantom_preprocessed)


def test_baseline_configs():
    for method in BASELINES:
        config = make_config(method, "paper")
        assert (config.lambda_global, config.lambda_local, config.tau) == (1.0, 0.0, 0.1)
        with pytest.raises(ValueError, match=f"{method} uses 0/1 pair weights"):
            make_config(method, formulation="paper-literal")
    assert make_config("PCL").pcl_threshold == 0.35 and make_config("GCL").gcl_partitions == 4
    with pytest.raises(ValueError, match="batch_size 6 must be a multiple of gcl_partitions 4"):
        make_config("GCL", batch_size=6)
    make_config("PCL", batch_size=6)  # only GCL's batches hold whole volumes
    assert make_config("PCL", pcl_threshold=0.5).digest() != make_config("PCL").digest()
    # the new fields stay out of the hash at the values runs before them had: caches pretrained before them keep
    # their names; the pre-norm tap (the new default) is another computation and gets another name
    # (the cpu preset was 8 x 10 iterations then: the same computation keeps its name, the longer preset gets another)
    legacy_cpu = dict(feature_tap="output", epochs=8, iterations_per_epoch=10)
    assert make_config("GLRP", "cpu", **legacy_cpu).digest() == "5eff91c898"
    assert make_config("GRP", "paper", seed=3, batch_size=4, feature_tap="output").digest() == "3604274c5b"
    assert make_config("GLRP", "cpu").digest() not in ("5eff91c898", make_config("GLRP", "cpu", seed=1).digest(),
                                                      make_config("GLRP", "cpu", epochs=8, iterations_per_epoch=10).digest())


def _pure_loss(method: str, z: torch.Tensor, batch: dict, config) -> torch.Tensor:
    if method == "SimCLR":
        return simclr_loss(z, tau=config.tau)
    if method == "PCL":
        return positional_contrastive_loss(z, batch["positions"], config.pcl_threshold, config.tau)
    return global_contrastive_loss(z, batch["partitions"], config.tau)


@pytest.mark.parametrize("method", BASELINES)
def test_step_is_the_baseline_loss_and_lowers_it(ctx, method):
    """The shared step computes exactly the exposed loss function on the global embeddings, and 20 steps
    on one fixed phantom batch (drawn by the method's own sampler) lower it."""
    from nnunetv2_glrp.data import PretrainingSliceLoader
    from nnunetv2_glrp.models import encoder_features

    config = make_config(method, lr=0.05, batch_size=8, epochs=1, iterations_per_epoch=20)
    records, _ = pretraining_records(ctx)
    torch.manual_seed(0)
    network, heads, _ = build_models(ctx, config)
    loader = PretrainingSliceLoader(records, config.batch_size, ctx.patch_size, seed=0,
                                    sampler=batch_sampler(records, config))
    batch = loader.generate_train_batch()
    if method == "GCL":
        assert batch["partitions"].tolist() == [0, 1, 2, 3] * 4  # 2 volumes x 4 partitions, two views each
        assert len({case for case, _ in batch["keys"][:4]}) == 1
    with torch.no_grad():
        expected = _pure_loss(method, heads.global_head(encoder_features(network, batch["data"], config.feature_tap)[-1]),
                              batch, config)
    opt = torch.optim.SGD(list(network.encoder.parameters()) + list(heads.parameters()), lr=config.lr,
                          momentum=config.momentum)
    losses = [training_step(network, heads, batch, config, opt, torch.device("cpu"), StepTimer(torch.device("cpu")))
              for _ in range(20)]
    assert losses[0]["grp"] == pytest.approx(expected.item(), rel=1e-5) and losses[0]["loss"] == losses[0]["grp"]
    assert np.isnan(losses[0]["lrp"])
    first, last = np.mean([l["loss"] for l in losses[:3]]), np.mean([l["loss"] for l in losses[-3:]])
    assert last < first - 0.05, [round(l["loss"], 4) for l in losses]
    assert all(l["grp_excess"] > -1e-5 for l in losses)  # above the target entropy (0 for SimCLR)


def test_baselines_pretrain_once_and_fine_tune_through_nnunets_lookup(ctx, monkeypatch):
    """Each baseline's ``_tiny`` trainer, found by nnU-Net's lookup, pretrains with its own method into its
    own cache folder, loads that encoder; a second caller reuses the cache without training."""
    from nnunetv2.run.run_training import get_trainer_from_args

    calls = []
    real = pretraining_api.run_pretraining
    monkeypatch.setattr(pretraining_api, "run_pretraining", lambda *a, **k: calls.append(a[1].method) or real(*a, **k))
    folders = set()
    for method in BASELINES:
        trainer = get_trainer_from_args("901", ctx.configuration, 0, f"{method}Trainer_k2_tiny", "nnUNetPlans",
                                        device=torch.device("cpu"))
        assert trainer.pretraining_method == method
        trainer.initialize()
        path = trainer.pretrained_encoder_path
        assert path.parent.name.startswith(f"{method}__nnUNetPlans__{ctx.configuration}__")
        blob = torch.load(path, weights_only=False)
        assert blob["method"] == method and blob["config"]["lambda_local"] == 0.0
        assert trainer.loaded_encoder_tensors == len(load_pretrained_encoder_state(path)) > 0
        stats = torch.load(path.parent / "checkpoint_latest.pth", weights_only=False)["history"]["epoch"]
        assert len(stats) == 1 and np.isfinite(stats[0]["grp"]) and stats[0]["iterations"] == 2
        assert json.loads((path.parent / "config.json").read_text())["config"]["method"] == method
        mtime = path.stat().st_mtime_ns
        again = ensure_pretrained(901, ctx.configuration, method=method, preset="cpu", seed=0,
                                  **dict(TINY_PRETRAINING_OVERRIDES))
        assert again == path and path.stat().st_mtime_ns == mtime
        folders.add(path.parent)
    assert calls == list(BASELINES) and len(folders) == 3


def test_gcl_trainer_fine_tunes_through_nnunetv2_train(phantom_preprocessed):
    """nnUNetv2_train with a baseline trainer (GCL: the one with its own sampler) pretrains or reuses its cache,
    loads the encoder and finishes its fine-tuning (1 epoch x 2 iterations) with a validation summary."""
    from nnunetv2_glrp.environment import nnunet_command
    from test_finetuning import _fold0, _run

    log = _run([nnunet_command("nnUNetv2_train"), "901", phantom_preprocessed, "0", "-tr", "GCLTrainer_k2_tiny",
                "-device", "cpu"])
    assert "pretrained encoder tensors (GCL) from" in log and "/glrp_pretraining/GCL__nnUNetPlans__" in log
    fold = _fold0("GCLTrainer_k2_tiny", phantom_preprocessed)
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "validation" / "summary.json").is_file()
    setup = json.loads((fold / "glrp_finetuning.json").read_text())
    assert setup["pretraining_method"] == "GCL" and setup["loaded_encoder_tensors"] > 0
