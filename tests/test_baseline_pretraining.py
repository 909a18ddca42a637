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


def test_baseline_configs(monkeypatch):
    from nnunetv2_glrp.pretraining import config as config_module

    for method in BASELINES:
        config = make_config(method, "full")
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
    # (these names are those of the first view seeding; per-slice view seeding, generation 2, renamed every entry)
    legacy_cpu = dict(feature_tap="output", epochs=8, iterations_per_epoch=10)
    monkeypatch.setattr(config_module, "VIEW_SEEDING_GENERATION", 1)
    assert make_config("GLRP", "cpu", **legacy_cpu).digest() == "5eff91c898"
    assert make_config("GRP", "full", seed=3, batch_size=4, feature_tap="output").digest() == "3604274c5b"
    monkeypatch.undo()
    assert make_config("GLRP", "cpu", **legacy_cpu).digest() != "5eff91c898"
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


def _cached_config(method: str):
    """The pretraining config a ``<method>Trainer_*_tiny`` must pretrain with (cpu preset, seed 0, tiny overrides)."""
    return make_config(method, "cpu", 0, **dict(TINY_PRETRAINING_OVERRIDES))


def _conv_weights(state: dict) -> dict[str, torch.Tensor]:
    return {key: value for key, value in state.items() if key.endswith(".weight") and value.ndim >= 2}


def _relative_change(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def test_baselines_pretrain_once_and_fine_tune_through_nnunets_lookup(ctx, monkeypatch):
    """Each baseline's ``_tiny`` trainer, found by nnU-Net's lookup, pretrains with its own method (its cache
    records exactly that method's config) into its own cache folder; pretraining moved every encoder parameter
    that its features depend on away from its seeded initialisation; the fine-tuning network's encoder at
    iteration 0 is the cached encoder, tensor for tensor; a second caller reuses the cache without training."""
    from nnunetv2.run.run_training import get_trainer_from_args

    from nnunetv2_glrp.finetuning.encoder_loading import unwrap_network

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
        config = _cached_config(method)
        assert (config.method, config.lambda_global, config.lambda_local) == (method, 1.0, 0.0)
        blob = torch.load(path, weights_only=False)
        assert blob["method"] == method and blob["config"] == config.to_dict()
        assert json.loads((path.parent / "config.json").read_text())["config"] == json.loads(
            json.dumps(config.to_dict(), default=list))
        state = load_pretrained_encoder_state(path)
        # pretraining moved the encoder: every parameter differs from the initialisation it started from
        # (the network built after torch.manual_seed(config.seed), as run_pretraining does), and the conv
        # weights only by the little that 2 iterations make (so that initialisation really is their start)
        torch.manual_seed(config.seed)
        initial_network, _, _ = build_models(ctx, config)
        initial = initial_network.encoder.state_dict()
        parameters = [key for key, _ in initial_network.encoder.named_parameters()]
        assert parameters and set(parameters) <= set(state)
        unmoved = [key for key in parameters if torch.equal(state[key], initial[key])]
        # only the deepest stage's last norm lies beyond the pre-norm tap (no gradient reaches it)
        untapped = [key for key in parameters[-2:] if ".norm." in key] if config.feature_tap == "pre-norm" else []
        assert unmoved == untapped, f"{method}: pretraining left {unmoved} at their initial values"
        assert all(_relative_change(state[key], initial[key]) < 0.5 for key in _conv_weights(initial)), method
        # the fine-tuning network's encoder before its first iteration is the cached encoder
        encoder_now = unwrap_network(trainer.network).encoder.state_dict()
        assert sorted(encoder_now) == sorted(state) and trainer.loaded_encoder_tensors == len(state) > 0
        differing = [key for key in state if not torch.equal(encoder_now[key].cpu(), state[key])]
        assert not differing, f"{method}: fine-tuning encoder differs from {path} in {differing}"
        stats = torch.load(path.parent / "checkpoint_latest.pth", weights_only=False)["history"]["epoch"]
        assert len(stats) == 1 and np.isfinite(stats[0]["grp"]) and stats[0]["iterations"] == 2
        mtime = path.stat().st_mtime_ns
        again = ensure_pretrained(901, ctx.configuration, method=method, preset="cpu", seed=0,
                                  **dict(TINY_PRETRAINING_OVERRIDES))
        assert again == path and path.stat().st_mtime_ns == mtime
        folders.add(path.parent)
    assert calls == list(BASELINES) and len(folders) == 3


def test_gcl_trainer_fine_tunes_through_nnunetv2_train(phantom_preprocessed, monkeypatch):
    """nnUNetv2_train with a baseline trainer (GCL: the one with its own sampler) pretrains or reuses its cache,
    records that cache's encoder as the one it loaded, fine-tunes from it (1 epoch x 2 iterations: the final
    encoder is still close to the cached one, not a fresh initialisation) and validates every validation case."""
    from nnunetv2_glrp.environment import nnunet_command
    from test_finetuning import _fold0, _run

    _run([nnunet_command("nnUNetv2_train"), "901", phantom_preprocessed, "0", "-tr", "GCLTrainer_k2_tiny",
          "-device", "cpu"])
    monkeypatch.setattr(pretraining_api, "run_pretraining", lambda *a, **k: pytest.fail("the cache was not reused"))
    cached = ensure_pretrained(901, phantom_preprocessed, method="GCL", preset="cpu", seed=0,
                               **dict(TINY_PRETRAINING_OVERRIDES))
    state = load_pretrained_encoder_state(cached)
    fold = _fold0("GCLTrainer_k2_tiny", phantom_preprocessed)
    setup = json.loads((fold / "glrp_finetuning.json").read_text())
    assert setup["pretraining_method"] == "GCL" and setup["pretrained_encoder"] == str(cached)
    assert setup["loaded_encoder_tensors"] == len(state) > 0
    assert (setup["num_epochs"], setup["num_iterations_per_epoch"]) == (1, 2)
    weights = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    final = {key[len("encoder."):]: value for key, value in weights.items() if key.startswith("encoder.")}
    assert sorted(final) == sorted(state)
    # the fine-tuning network is initialised with the same seed as the pretraining network was, so an encoder
    # that was never loaded would stay near that initialisation: the final conv weights must be far closer to
    # the cached encoder (2 fine-tuning iterations away) than to the initialisation (2 pretraining iterations)
    from nnunetv2_glrp.models import load_plans_context

    config = _cached_config("GCL")
    torch.manual_seed(config.seed)
    initial = build_models(load_plans_context(901, phantom_preprocessed), config)[0].encoder.state_dict()
    ratios = {key: float((final[key] - value).norm() / (final[key] - initial[key]).norm())
              for key, value in _conv_weights(state).items()}
    assert ratios and max(ratios.values()) < 0.25, ratios
    validation_cases = json.loads((fold / "k_patients.json").read_text())["validation_cases"]
    summary = json.loads((fold / "validation" / "summary.json").read_text())
    assert sorted(c["prediction_file"].rsplit("/", 1)[-1] for c in summary["metric_per_case"]) == sorted(
        f"{case}.nii.gz" for case in validation_cases) and validation_cases
    assert 0.0 <= summary["foreground_mean"]["Dice"] <= 1.0
