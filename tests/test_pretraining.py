"""GLRP pretraining on the phantom (small CPU plan): loss goes down, checkpoints, exact resume, cache, lock."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from nnunetv2_glrp.pretraining import (PretrainingConfig, ensure_pretrained, load_pretrained_encoder_state,
                                       make_config, pretraining_folder, run_pretraining)
from nnunetv2_glrp.pretraining import api as pretraining_api
from nnunetv2_glrp.pretraining.checkpoint import file_lock

# small and fast: 4 slices (8 views) per batch, PSM on 16 px patches
FAST = dict(epochs=2, iterations_per_epoch=3, batch_size=4, psm_patch_size=16)


@pytest.fixture(scope="module")
def ctx(phantom_preprocessed):
    from nnunetv2_glrp.models import load_plans_context

    torch.set_num_threads(1)
    return load_plans_context(901, phantom_preprocessed)


def test_config_presets_and_methods():
    paper = make_config("GLRP", "paper")
    assert (paper.lr, paper.momentum, paper.batch_size, paper.epochs, paper.tau, paper.a) == (0.1, 0.9, 12, 200, 0.1, 15)
    assert (make_config("GRP").lambda_global, make_config("GRP").lambda_local) == (1.0, 0.0)
    assert (make_config("LRP").lambda_global, make_config("LRP").lambda_local) == (0.0, 1.0)
    assert make_config("GLRPLinear").similarity_kind == "linear"
    assert make_config(seed=1).digest() != make_config(seed=0).digest()
    assert PretrainingConfig.from_dict(paper.to_dict()) == paper
    with pytest.raises(ValueError, match="unknown pretraining config fields"):
        make_config(learning_rate=1)
    with pytest.raises(ValueError, match="unknown pretraining method"):
        make_config("SimCLR")


def test_loss_decreases_on_a_fixed_batch(ctx):
    """20 SGD steps of the real training step on one fixed phantom batch lower the GLRP loss."""
    import functools

    from nnunetv2_glrp.data import PretrainingSliceLoader, build_slice_index, load_split
    from nnunetv2_glrp.pretraining.loop import (StepTimer, build_models, compute_psm, local_stage_boxes,
                                                training_step, unlabeled_data_folder)

    config = make_config("GLRP", lr=0.05, **FAST)
    records = build_slice_index([ctx.data_folder, unlabeled_data_folder(ctx)], load_split(ctx.preprocessed_dataset_folder))
    torch.manual_seed(0)
    np.random.seed(0)
    network, heads, stage = build_models(ctx, config)
    psm_fn = functools.partial(compute_psm, grid=3, boxes=local_stage_boxes(ctx, stage, 3), mapping="affine",
                               patch_size=16)
    batch = PretrainingSliceLoader(records, 6, ctx.patch_size, seed=0, psm_fn=psm_fn).generate_train_batch()
    params = list(network.encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    timer = StepTimer(torch.device("cpu"))
    losses = [training_step(network, heads, batch, config, opt, torch.device("cpu"), timer) for _ in range(20)]
    first, last = np.mean([l["loss"] for l in losses[:3]]), np.mean([l["loss"] for l in losses[-3:]])
    assert last < first - 0.05, [round(l["loss"], 4) for l in losses]
    assert all(np.isfinite(l["grp"]) and np.isfinite(l["lrp"]) for l in losses)
    assert 0 < timer.loss < timer.step


def test_interrupted_run_resumes_to_the_same_state(ctx, tmp_path):
    config = make_config("GLRP", seed=3, **FAST)
    stopped = []
    run_pretraining(ctx, config, tmp_path / "a", stop_after_epoch=0, on_epoch_end=lambda e, s: stopped.append(e))
    assert stopped == [0]
    assert (tmp_path / "a" / "checkpoint_latest.pth").is_file()
    assert not (tmp_path / "a" / "pretrained_encoder.pth").exists()
    assert torch.load(tmp_path / "a" / "checkpoint_latest.pth", weights_only=False)["epoch"] == 0
    resumed = run_pretraining(ctx, config, tmp_path / "a")
    straight = run_pretraining(ctx, config, tmp_path / "b")
    sa, sb = load_pretrained_encoder_state(resumed), load_pretrained_encoder_state(straight)
    assert sa.keys() == sb.keys() and len(sa) > 0
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    ha = torch.load(tmp_path / "a" / "checkpoint_latest.pth", weights_only=False)["history"]
    hb = torch.load(tmp_path / "b" / "checkpoint_latest.pth", weights_only=False)["history"]
    assert [t["loss"] for t in ha["iteration"]] == [t["loss"] for t in hb["iteration"]]
    log = (tmp_path / "a" / "log.txt").read_text()
    assert "resumed from" in log and "epoch 2/2 loss" in log
    for name in ("config.json", "loss_curve.png"):
        assert (tmp_path / "a" / name).stat().st_size > 0
    assert not list((tmp_path / "a").glob(".*tmp*"))


def test_ensure_pretrained_caches_and_loads_into_the_encoder(ctx, monkeypatch):
    from nnunetv2_glrp.models import build_network

    calls = []
    real = pretraining_api.run_pretraining
    monkeypatch.setattr(pretraining_api, "run_pretraining", lambda *a, **k: calls.append(1) or real(*a, **k))
    kwargs = dict(method="GRP", preset="cpu", seed=0, epochs=1, iterations_per_epoch=2, batch_size=4)
    path = ensure_pretrained(901, ctx.configuration, **kwargs)
    assert path == pretraining_folder(901, ctx.configuration, **kwargs) / "pretrained_encoder.pth"
    mtime = path.stat().st_mtime_ns
    assert ensure_pretrained(901, ctx.configuration, **kwargs) == path
    assert calls == [1] and path.stat().st_mtime_ns == mtime
    blob = torch.load(path, weights_only=False)
    assert blob["method"] == "GRP" and blob["configuration"] == ctx.configuration and blob["config"]["seed"] == 0
    network = build_network(ctx)
    network.encoder.load_state_dict(load_pretrained_encoder_state(path), strict=True)


def test_second_caller_waits_for_the_lock_and_reuses(ctx, monkeypatch):
    calls = []
    monkeypatch.setattr(pretraining_api, "run_pretraining", lambda *a, **k: calls.append(1))
    kwargs = dict(method="LRP", preset="cpu", seed=7, epochs=1)
    folder = pretraining_folder(901, ctx.configuration, **kwargs)
    result = []
    with file_lock(folder / ".lock"):  # another process is pretraining
        t = threading.Thread(target=lambda: result.append(ensure_pretrained(901, ctx.configuration, **kwargs)))
        t.start()
        time.sleep(0.5)
        assert t.is_alive() and not result  # blocked on the lock
        torch.save({"encoder_state_dict": {}}, folder / "pretrained_encoder.pth")  # the holder finishes
    t.join(timeout=30)
    assert result == [folder / "pretrained_encoder.pth"] and calls == []
