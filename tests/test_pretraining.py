"""GLRP pretraining on the phantom (small CPU plan): loss goes down, checkpoints, exact resume, cache keyed
on config and data, lock, paper-literal formulation, honest loss timing."""

from __future__ import annotations

import json
import re
import shutil
import threading

import numpy as np
import pytest
import torch

from nnunetv2_glrp.data.augmentation import ViewAugmentation
from nnunetv2_glrp.pretraining import (PretrainingConfig, ensure_pretrained, folder_for_config,
                                       load_pretrained_encoder_state, make_config, run_pretraining)
from nnunetv2_glrp.pretraining import api as pretraining_api
from nnunetv2_glrp.pretraining.checkpoint import file_lock
from nnunetv2_glrp.pretraining.inputs import build_models, pretraining_records, psm_function
from nnunetv2_glrp.pretraining.step import StepTimer, training_step

# small and fast: 4 slices (8 views) per batch, PSM on 16 px patches
FAST = dict(epochs=2, iterations_per_epoch=3, batch_size=4, psm_patch_size=16)


@pytest.fixture(scope="module")
def ctx(phantom_preprocessed):
    from nnunetv2_glrp.models import load_plans_context

    torch.set_num_threads(1)
    return load_plans_context(901, phantom_preprocessed)


def _expected_folder(ctx, method: str, preset: str, seed: int, **overrides):
    """The cache folder ``ensure_pretrained`` must use: named by the config and the digest of the present data."""
    from nnunetv2_glrp.data import data_digest

    digest = data_digest(pretraining_api.data_manifest(ctx.dataset_name))
    return folder_for_config(ctx.dataset_name, ctx.configuration, "nnUNetPlans",
                             make_config(method, preset, seed, **overrides), digest)


def _config_from_dict(d: dict) -> PretrainingConfig:
    """The config that ``to_dict`` (as stored in config.json and the checkpoints) describes."""
    d = dict(d)
    aug = {k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("augmentation", {}).items()}
    return PretrainingConfig(**d, augmentation=ViewAugmentation(**aug))


def test_config_presets_and_methods(monkeypatch):
    from nnunetv2_glrp.pretraining import config as config_module

    full = make_config("GLRP", "full")
    assert (full.lr, full.momentum, full.batch_size, full.epochs, full.tau, full.a) == (0.1, 0.9, 12, 200, 0.1, 15)
    # the preset's name is no field of the config: the cache key of an encoder pretrained with this preset
    # under its earlier name "paper" stays the same ("4727f4e490" with the first view seeding; per-slice view
    # seeding (generation 2) changed the views and so the key, and only that)
    assert full.digest() == "cd081433d1"
    monkeypatch.setattr(config_module, "VIEW_SEEDING_GENERATION", 1)
    assert full.digest() == "4727f4e490"
    monkeypatch.undo()
    assert (make_config("GRP").lambda_global, make_config("GRP").lambda_local) == (1.0, 0.0)
    assert (make_config("LRP").lambda_global, make_config("LRP").lambda_local) == (0.0, 1.0)
    assert make_config("GLRPLinear").similarity_kind == "linear"
    assert make_config(seed=1).digest() != make_config(seed=0).digest()
    assert _config_from_dict(full.to_dict()) == full
    assert _config_from_dict(json.loads(json.dumps(full.to_dict()))) == full  # lists back to tuples
    with pytest.raises(ValueError, match="unknown pretraining config fields"):
        make_config(learning_rate=1)
    with pytest.raises(ValueError, match="unknown pretraining method"):
        make_config("MoCo")
    assert make_config("GLRP").psm_cross_class == "zero"
    assert make_config("GLRP", formulation="paper-literal").psm_cross_class == "ssim"
    with pytest.raises(ValueError, match="paper-literal.*needs psm_mapping='affine'"):
        make_config("GLRP", formulation="paper-literal", psm_mapping="clamp")
    make_config("GRP", formulation="paper-literal", psm_mapping="clamp")  # no local term: no PSM weights


def _fixed_batch(ctx, config, batch_size=6):
    from nnunetv2_glrp.data import PretrainingSliceLoader

    records, _ = pretraining_records(ctx)
    torch.manual_seed(0)
    np.random.seed(0)
    network, heads, stage = build_models(ctx, config)
    loader = PretrainingSliceLoader(records, batch_size, ctx.patch_size, seed=0, psm_fn=psm_function(ctx, config, stage))
    return network, heads, loader.generate_train_batch()


def test_psm_location_is_an_execution_setting():
    """Where the PSM runs never changes the cache key; "auto" puts it on the device only for a GPU."""
    from nnunetv2_glrp.pretraining.inputs import psm_on_device

    full = make_config("GLRP", "full")
    for where in ("loader", "device"):
        assert make_config("GLRP", "full", psm_location=where).digest() == full.digest() == "cd081433d1"
    assert make_config("GLRP", "cpu", psm_location="device").digest() == make_config("GLRP", "cpu").digest()
    assert [psm_on_device(make_config(psm_location=w), d) for w, d in
            [("auto", "cpu"), ("auto", "cuda:0"), ("loader", "cuda"), ("device", "cpu")]] == [False, True, False, True]
    with pytest.raises(ValueError, match="psm_location must be one of"):
        make_config(psm_location="gpu")


def test_psm_computed_in_the_step_gives_the_loader_psm_step(ctx):
    """The step computing the PSM on the training device (psm_fn, batch without psm) makes exactly the update of
    the step fed the data loader's PSM, and reports the PSM seconds."""
    import copy

    config = make_config("GLRP", lr=0.05, psm_location="device", **FAST)
    network, heads, batch = _fixed_batch(ctx, config, batch_size=4)
    psm_fn = psm_function(ctx, config, heads.local_stage)
    torch.testing.assert_close(psm_fn(batch["data"][:, 0]), batch["psm"], rtol=0, atol=0)
    results = []
    for with_loader_psm in (True, False):
        net, hd = copy.deepcopy(network), copy.deepcopy(heads)
        params = list(net.encoder.parameters()) + list(hd.parameters())
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
        timer = StepTimer(torch.device("cpu"))
        b = batch if with_loader_psm else {**batch, "psm": None, "psm_seconds": 0.0}
        out = training_step(net, hd, b, config, opt, torch.device("cpu"), timer,
                            None if with_loader_psm else psm_fn)
        results.append((out, [p.detach().clone() for p in params], timer.psm))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert results[1][2] > 0
    with pytest.raises(ValueError, match="needs the PSM"):
        training_step(network, heads, {**batch, "psm": None}, config, opt, torch.device("cpu"))


def test_loss_decreases_on_a_fixed_batch(ctx):
    """20 SGD steps of the real training step on one fixed phantom batch lower the GLRP loss."""
    config = make_config("GLRP", lr=0.05, **FAST)
    network, heads, batch = _fixed_batch(ctx, config)
    params = list(network.encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    timer = StepTimer(torch.device("cpu"))
    losses = [training_step(network, heads, batch, config, opt, torch.device("cpu"), timer) for _ in range(20)]
    first, last = np.mean([l["loss"] for l in losses[:3]]), np.mean([l["loss"] for l in losses[-3:]])
    assert last < first - 0.05, [round(l["loss"], 4) for l in losses]
    assert all(np.isfinite(l["grp"]) and np.isfinite(l["lrp"]) for l in losses)
    # the excess over the soft-target floor (target entropy) is a KL: never negative, and it falls
    from nnunetv2_glrp.losses import slice_similarity, soft_target_entropy

    floor = soft_target_entropy(slice_similarity(batch["positions"], a=config.a, kind=config.similarity_kind)).item()
    assert losses[0]["grp_excess"] == pytest.approx(losses[0]["grp"] - floor, abs=1e-6)
    assert all(l["grp_excess"] > -1e-5 and l["lrp_excess"] > -1e-5 for l in losses)
    assert np.mean([l["grp_excess"] + l["lrp_excess"] for l in losses[-3:]]) < \
        np.mean([l["grp_excess"] + l["lrp_excess"] for l in losses[:3]])
    assert timer.loss_forward > 0 and timer.loss_backward > 0 and timer.loss < timer.step
    assert timer.loss_share == pytest.approx(timer.loss / timer.step)


def test_a_non_finite_loss_raises_before_the_update(ctx):
    """A NaN input raises before the optimizer touches the parameters or the momentum, and names the batch's
    cases."""
    config = make_config("GLRP", lr=0.05, **FAST)
    network, heads, batch = _fixed_batch(ctx, config, batch_size=4)
    params = list(network.encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    training_step(network, heads, batch, config, opt, torch.device("cpu"))  # a finite step: momentum exists
    before = [p.detach().clone() for p in params]
    momentum = [opt.state[p]["momentum_buffer"].clone() for p in params if "momentum_buffer" in opt.state[p]]
    assert momentum
    data = batch["data"].clone()
    data[0, 0, 0, 0] = float("nan")
    with pytest.raises(FloatingPointError, match=re.escape(str(batch["keys"][0]))):
        training_step(network, heads, {**batch, "data": data}, config, opt, torch.device("cpu"))
    for a, b in zip(before, params):
        torch.testing.assert_close(a, b.detach(), rtol=0, atol=0)
    after = [opt.state[p]["momentum_buffer"] for p in params if "momentum_buffer" in opt.state[p]]
    for a, b in zip(momentum, after):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_2x2_grid_runs_through_psm_heads_and_step(ctx):
    """PretrainingConfig.grid reaches the PSM (4 patches per view), the local head and the LRP weights."""
    config = make_config("GLRP", grid=2, **FAST)
    network, heads, batch = _fixed_batch(ctx, config, batch_size=4)
    assert batch["psm"].shape == (4 * 8, 4 * 8)
    assert heads.local_head.grid == 2
    opt = torch.optim.SGD(list(network.encoder.parameters()) + list(heads.parameters()), lr=0.01)
    out = training_step(network, heads, batch, config, opt, torch.device("cpu"))
    assert np.isfinite(out["lrp"]) and np.isfinite(out["grp"])


def test_step_cut_at_the_embeddings_gives_the_joint_backward_gradients(ctx):
    """The timed step (losses on detached embeddings, then backward through the network) computes the same
    parameter gradients as one loss.backward() through the whole graph."""
    from nnunetv2_glrp.losses import glrp_loss, global_relative_position_loss, local_pair_weights, \
        relative_position_loss, slice_similarity
    from nnunetv2_glrp.models import encoder_features
    from nnunetv2_glrp.patch_grid import patch_view_index

    config = make_config("GLRP", lr=0.0, momentum=0.0, weight_decay=0.0, grad_clip=1e9, **FAST)
    network, heads, batch = _fixed_batch(ctx, config, batch_size=4)
    params = list(network.encoder.parameters()) + list(heads.parameters())
    opt = torch.optim.SGD(params, lr=0.0)
    training_step(network, heads, batch, config, opt, torch.device("cpu"), StepTimer(torch.device("cpu")))
    cut = [None if p.grad is None else p.grad.clone() for p in params]
    opt.zero_grad(set_to_none=True)
    x, pos = batch["data"], batch["positions"]
    feats = encoder_features(network, x, config.feature_tap)
    l_grp = global_relative_position_loss(heads.global_head(feats[-1]), pos, a=config.a, tau=config.tau)
    w = local_pair_weights(batch["psm"], patch_view_index(x.shape[0], 3), slice_similarity(pos, a=config.a))
    l_lrp = relative_position_loss(heads.local_head(feats[heads.local_stage]), w, tau=config.tau)
    glrp_loss(l_grp, l_lrp, (0.5, 0.5)).backward()
    assert sum(g is not None for g in cut) > 10
    for p, g in zip(params, cut):
        assert (p.grad is None) == (g is None)
        if g is not None:
            torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-7)


def test_paper_literal_glrp_pretraining_runs(ctx, tmp_path):
    """Eq. 2 read literally takes log of every pair weight: the PSM then weights cross-class patch pairs by
    their SSIM instead of 0, so GLRP with formulation='paper-literal' trains instead of raising."""
    config = make_config("GLRP", seed=1, formulation="paper-literal", epochs=1, iterations_per_epoch=2, batch_size=4,
                         psm_patch_size=16)
    _, _, batch = _fixed_batch(ctx, config, batch_size=4)
    assert bool((batch["psm"] > 0).all())  # no zero weight for the log
    soft = make_config("GLRP", **FAST)
    network, heads, soft_batch = _fixed_batch(ctx, soft, batch_size=4)
    assert bool((soft_batch["psm"] == 0).any())  # the default zeroes cross-class pairs...
    opt = torch.optim.SGD(list(network.parameters()) + list(heads.parameters()), lr=0.0)
    with pytest.raises(ValueError, match="strictly positive"):  # ...which the literal loss cannot take
        training_step(network, heads, soft_batch, config, opt, torch.device("cpu"), StepTimer(torch.device("cpu")))
    path = run_pretraining(ctx, config, tmp_path / "literal")
    record = json.loads((tmp_path / "literal" / "config.json").read_text())
    assert record["resolved"]["psm_cross_class"] == "ssim" and record["config"]["formulation"] == "paper-literal"
    network, _, _ = build_models(ctx, config)
    assert set(load_pretrained_encoder_state(path)) == set(network.encoder.state_dict())
    stats = torch.load(tmp_path / "literal" / "checkpoint_latest.pth", weights_only=False)["history"]["epoch"]
    assert len(stats) == 1 and np.isfinite(stats[0]["lrp"]) and np.isfinite(stats[0]["grp"])


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
    ca = torch.load(tmp_path / "a" / "checkpoint_latest.pth", weights_only=False)
    ha, hb = ca["history"], torch.load(tmp_path / "b" / "checkpoint_latest.pth", weights_only=False)["history"]
    assert set(ha) == {"epoch"} and len(ha["epoch"]) == 2  # per-epoch statistics only: bounded size
    keys = ("loss", "grp", "lrp", "loss_std", "loss_min", "loss_max", "loss_last", "iterations", "lr")
    assert [[e[k] for k in keys] for e in ha["epoch"]] == [[e[k] for k in keys] for e in hb["epoch"]]
    assert ha["epoch"][0]["iterations"] == 3 and ha["epoch"][0]["loss_min"] <= ha["epoch"][0]["loss"]
    # a checkpoint trained on other data is never resumed
    shutil.copytree(tmp_path / "a", tmp_path / "c")
    ca["data_digest"] = "0000000000"
    torch.save(ca, tmp_path / "c" / "checkpoint_latest.pth")
    with pytest.raises(ValueError, match=r"c: its checkpoint was trained on data with digest 0000000000"):
        run_pretraining(ctx, config, tmp_path / "c")
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
    assert path == _expected_folder(ctx, **kwargs) / "pretrained_encoder.pth"
    mtime = path.stat().st_mtime_ns
    assert ensure_pretrained(901, ctx.configuration, **kwargs) == path
    assert calls == [1] and path.stat().st_mtime_ns == mtime
    blob = torch.load(path, weights_only=False)
    assert blob["method"] == "GRP" and blob["configuration"] == ctx.configuration and blob["config"]["seed"] == 0
    network = build_network(ctx)
    network.encoder.load_state_dict(load_pretrained_encoder_state(path), strict=True)
    from nnunetv2_glrp.data import data_digest

    manifest = pretraining_api.data_manifest(ctx.dataset_name)
    record = json.loads((path.parent / "config.json").read_text())["data"]
    assert record["digest"] == data_digest(manifest) and record["patients"] == manifest["patients"]
    assert record["n_unlabeled_cases"] > 0
    # the folder name follows the data: another split (p1 moved to test) gives another folder
    resplit = dict(manifest, patients=manifest["patients"][1:],
                   cases=[c for c in manifest["cases"] if c[1] != manifest["patients"][0]])
    monkeypatch.setattr(pretraining_api, "data_manifest", lambda name: resplit)
    assert _expected_folder(ctx, **kwargs) != path.parent
    monkeypatch.undo()
    # a reused folder whose data record disagrees with the dataset is an error naming it
    config_json = path.parent / "config.json"
    original = config_json.read_text()
    try:
        tampered = json.loads(original)
        tampered["data"]["patients"] = tampered["data"]["patients"][1:]
        config_json.write_text(json.dumps(tampered))
        with pytest.raises(ValueError, match=f"{path.parent.name}: pretrained on data with patients"):
            ensure_pretrained(901, ctx.configuration, **kwargs)
    finally:
        config_json.write_text(original)
    assert ensure_pretrained(901, ctx.configuration, **kwargs) == path


def test_second_caller_waits_for_the_lock_and_reuses(ctx, monkeypatch):
    calls = []
    monkeypatch.setattr(pretraining_api, "run_pretraining", lambda *a, **k: calls.append(1))
    kwargs = dict(method="LRP", preset="cpu", seed=7, epochs=1)
    waiting = threading.Event()

    def signalling_lock(path):  # the caller is about to take the lock
        waiting.set()
        return file_lock(path)

    monkeypatch.setattr(pretraining_api, "file_lock", signalling_lock)
    folder = _expected_folder(ctx, **kwargs)
    result = []
    with file_lock(folder / ".lock"):  # another process is pretraining
        t = threading.Thread(target=lambda: result.append(ensure_pretrained(901, ctx.configuration, **kwargs)))
        t.start()
        assert waiting.wait(timeout=60)  # no encoder yet: the caller went on to the lock...
        assert t.is_alive() and not result  # ...which we hold, so it cannot have returned
        from nnunetv2_glrp.data import data_digest

        manifest = pretraining_api.data_manifest(ctx.dataset_name)
        (folder / "config.json").write_text(json.dumps({"data": {"digest": data_digest(manifest),
                                                                 "patients": manifest["patients"]}}))
        torch.save({"encoder_state_dict": {}}, folder / "pretrained_encoder.pth")  # the holder finishes
    t.join(timeout=30)
    assert result == [folder / "pretrained_encoder.pth"] and calls == []


def test_pretraining_with_the_psm_on_the_device_trains_the_same_encoder(ctx, tmp_path):
    """run_pretraining with psm_location "device" (the step computes the PSM on the CPU here) trains exactly the
    encoder of the run whose data loader computes it, and config.json says where it ran."""
    short = {**FAST, "epochs": 1, "iterations_per_epoch": 2}
    paths = {where: run_pretraining(ctx, make_config("GLRP", seed=5, psm_location=where, **short), tmp_path / where)
             for where in ("loader", "device")}
    sa, sb = (load_pretrained_encoder_state(paths[w]) for w in ("loader", "device"))
    assert sa.keys() == sb.keys() and len(sa) > 0
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    on = {w: json.loads((tmp_path / w / "config.json").read_text(encoding="utf-8"))["resolved"]["psm_computed_on"]
          for w in paths}
    assert on == {"loader": "data loader", "device": "cpu"}


def test_bf16_autocast_and_channels_last_steps_stay_close_to_float32(ctx):
    """On the CPU: channels_last gives the float32 step's loss and update (to float tolerance); bf16 autocast runs,
    keeps the losses in float32 and stays close to the float32 loss. Neither changes the digest at its default."""
    import copy

    base = make_config("GLRP", lr=0.05, **FAST)
    assert make_config("GLRP", "full", autocast="none", channels_last=False).digest() == "cd081433d1"
    assert make_config("GLRP", "full", autocast="bf16").digest() != "cd081433d1"
    network, heads, batch = _fixed_batch(ctx, base, batch_size=4)
    runs = {}
    for name, over in {"fp32": {}, "cl": {"channels_last": True}, "bf16": {"autocast": "bf16"}}.items():
        config = make_config("GLRP", lr=0.05, **FAST, **over)
        net, hd = copy.deepcopy(network), copy.deepcopy(heads)
        if config.channels_last:
            net.to(memory_format=torch.channels_last)
        params = list(net.encoder.parameters()) + list(hd.parameters())
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
        out = training_step(net, hd, batch, config, opt, torch.device("cpu"))
        runs[name] = (out, [p.detach().clone() for p in params])
    fp32, cl, bf16 = runs["fp32"], runs["cl"], runs["bf16"]
    assert cl[0]["loss"] == pytest.approx(fp32[0]["loss"], abs=1e-4)  # other conv kernels: float32 rounding
    start = [p.detach() for p in list(network.encoder.parameters()) + list(heads.parameters())]
    d32 = torch.cat([(a - s).flatten() for a, s in zip(fp32[1], start)])
    dcl = torch.cat([(a - s).flatten() for a, s in zip(cl[1], start)])
    # Not fully explained: the channels_last update differs from the float32 one by ~6 % (relative norm) after one
    # step on the phantom, although the loss agrees to 2e-5. Part of it is known: the conv biases in front of
    # InstanceNorm have an exactly-zero gradient in exact arithmetic (the norm removes the mean), so theirs is pure
    # rounding noise that differs 100 % between kernels; on a bare encoder with a smooth loss the weight gradients
    # of the two memory formats differ by ~1e-3 (relative, float32 accumulation order). Bounded here (issue 21).
    assert float((dcl - d32).norm() / d32.norm()) < 0.1, float((dcl - d32).norm() / d32.norm())
    assert np.isfinite(bf16[0]["loss"]) and bf16[0]["loss"] != fp32[0]["loss"]  # bf16 really ran
    assert abs(bf16[0]["loss"] - fp32[0]["loss"]) < 0.02 * fp32[0]["loss"]
    assert all(p.dtype == torch.float32 for p in bf16[1])
    with pytest.raises(ValueError, match="autocast must be one of"):
        make_config(autocast="fp8")


@pytest.mark.parametrize("backend", ["aot_eager"])
def test_compiled_encoder_step_equals_the_eager_step_and_keeps_the_module_keys(ctx, backend):
    """``compile``: one step through the compiled encoder forward gives the eager step's loss and update (float
    tolerance), the network's state_dict keeps the uncompiled keys (no ``_orig_mod.``), the digest ignores it.
    Backend aot_eager: the same dynamo trace and AOT autograd graph as inductor, without generating C++ code (inductor
    on this 2-core CPU compiles for minutes); the inductor path is the same call with torch's default backend."""
    import copy

    from nnunetv2_glrp.pretraining.compiling import feature_function

    full = make_config("GLRP", "full")
    assert make_config("GLRP", "full", compile="max-autotune").digest() == full.digest() == "cd081433d1"
    base = make_config("GLRP", lr=0.05, **FAST)
    network, heads, batch = _fixed_batch(ctx, base, batch_size=4)
    keys = list(network.state_dict())
    runs = {}
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    for mode in ("none", "default"):
        config = make_config("GLRP", lr=0.05, compile=mode, **FAST)
        net, hd = copy.deepcopy(network), copy.deepcopy(heads)
        params = list(net.encoder.parameters()) + list(hd.parameters())
        opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
        features = feature_function(net, config.feature_tap, config.compile, backend=backend)
        out = training_step(net, hd, batch, config, opt, torch.device("cpu"), features=features)
        runs[mode] = (out, torch.cat([p.detach().flatten() for p in params]), net)
        features(batch["data"])  # a later step's forward: no recompilation (one graph in all, checked below)
    (eager, w_eager, _), (comp, w_comp, net_c) = runs["none"], runs["default"]
    graphs = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    # the encoder really ran compiled, as one graph: no graph break (per-call hooks would make one)
    assert graphs == 1 and not torch._dynamo.utils.counters["graph_break"], dict(torch._dynamo.utils.counters)
    assert comp["loss"] == pytest.approx(eager["loss"], abs=1e-5)
    start = torch.cat([p.detach().flatten() for p in list(network.encoder.parameters()) + list(heads.parameters())])
    assert not torch.equal(w_comp, start)  # the compiled forward's gradients reached the parameters
    assert float((w_comp - w_eager).norm() / (w_eager - start).norm()) < 1e-3
    assert list(net_c.state_dict()) == keys and not any("_orig_mod" in k for k in keys)
    with pytest.raises(ValueError, match="compile must be one of"):
        make_config(compile="fast")


def test_pretraining_run_with_compile_records_it_and_saves_the_uncompiled_keys(ctx, tmp_path, monkeypatch):
    """run_pretraining with ``compile`` (aot_eager backend, see above): config.json records the mode, the final
    encoder and the checkpoint have the keys of the eager run, and the weights are the eager run's to float
    tolerance (2 iterations)."""
    import functools

    from nnunetv2_glrp.pretraining import loop
    from nnunetv2_glrp.pretraining.compiling import feature_function

    monkeypatch.setattr(loop, "feature_function", functools.partial(feature_function, backend="aot_eager"))
    torch._dynamo.reset()
    torch._dynamo.utils.counters.clear()
    short = {**FAST, "epochs": 1, "iterations_per_epoch": 2}
    paths = {mode: run_pretraining(ctx, make_config("GLRP", seed=5, compile=mode, **short), tmp_path / mode)
             for mode in ("none", "default")}
    recorded = json.loads((tmp_path / "default" / "config.json").read_text(encoding="utf-8"))["config"]
    assert recorded["compile"] == "default" and _config_from_dict(recorded).compile == "default"
    se, sc = (load_pretrained_encoder_state(paths[m]) for m in ("none", "default"))
    assert list(se) == list(sc) and len(se) > 0 and not any("_orig_mod" in k for k in sc)
    ce, cc = (torch.load(tmp_path / m / "checkpoint_latest.pth", weights_only=False) for m in ("none", "default"))
    assert list(ce["encoder"]) == list(cc["encoder"])
    for k in se:
        torch.testing.assert_close(sc[k], se[k], rtol=1e-3, atol=1e-4)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # the compiled run really compiled
