"""Distributed pretraining with 2 gloo processes on the phantom (nnunet_cpu: InstanceNorm encoder).

- 2 ranks with the global batch B (B/2 slices each) train the checkpoint that 1 process trains with batch B and the
  same seed (to float tolerance: the all-reduces sum in another order), for GLRP (both terms, PSM over the
  gathered global batch, BatchNorm1d heads on the gathered pooled features);
- a 2-rank run stopped after epoch 1 and resumed by 2 new ranks ends where the uninterrupted 2-rank run ends;
- only rank 0 opens files for writing (every ``open``/``os.replace``/log file of both ranks is recorded);
- ``ensure_pretrained`` called by both ranks pretrains once (together), and a second call reuses the cache;
  with a batch the ranks cannot split, one rank pretrains alone while the other waits on the lock.

Why not bitwise: the gradient all-reduce adds the ranks' partial gradients, the single process sums the same
terms inside one backward, in another order. The first step's update then differs by about 1e-5 of its size, and
this rounding noise grows about tenfold per SGD step at this tiny batch (measured: 8e-6, 8e-5 after 1, 2 steps, 1e-2
after 4 steps at lr 0.01), as any rounding change would; hence 2 steps here and a tolerance relative to the update.
With lr 0 the losses of every iteration are bitwise equal (the same global batches, views and PSM).
The biases of convolutions followed by InstanceNorm have a zero gradient up to rounding: their "updates" are noise
and are left out of the comparison.
BatchNorm encoders (``paper_unet_cpu``) are not covered here: on the CPU there is no SyncBatchNorm, so their
statistics are per rank (on CUDA the loop converts them to SyncBatchNorm).
"""

from __future__ import annotations

import builtins
import io
import json
import logging
import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunetv2_glrp.pretraining import make_config, run_pretraining
from nnunetv2_glrp.pretraining.launch import free_port

WORLD = 2
# 2 epochs of 1 step, 4 slices (8 views) per global batch; no gradient clipping, which would hide gradients scaled
# by the number of ranks (a clipped gradient has the same direction whatever its scale)
TINY = dict(epochs=2, iterations_per_epoch=1, batch_size=4, psm_patch_size=16, lr=0.01, grad_clip=1e9)


@pytest.fixture(scope="module")
def ctx(phantom_preprocessed_nnunet):
    from nnunetv2_glrp.models import load_plans_context

    torch.set_num_threads(1)
    return load_plans_context(901, phantom_preprocessed_nnunet)


def _record_writes(rank: int, writes) -> None:
    """Record (rank, path) of every file this process opens for writing or moves into place."""
    real_open, real_replace = builtins.open, os.replace

    def recording_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+"):
            writes.append((rank, os.fspath(file)))
        return real_open(file, mode, *args, **kwargs)

    def recording_replace(src, dst, *args, **kwargs):
        writes.append((rank, os.fspath(dst)))
        return real_replace(src, dst, *args, **kwargs)

    builtins.open = io.open = recording_open
    os.replace = recording_replace
    logging.FileHandler._builtin_open = staticmethod(recording_open)


def _ranks(rank: int, port: int, job, args, out) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        job(rank, *args, out)
    finally:
        dist.destroy_process_group()


def _spawn(job, *args) -> dict:
    with mp.Manager() as manager:
        out = manager.dict(writes=manager.list())
        mp.spawn(_ranks, args=(free_port(), job, args, out), nprocs=WORLD, join=True)
        return {k: (list(v) if k == "writes" else v) for k, v in out.items()}


def _pretrain_job(rank: int, configuration: str, config, runs, out) -> None:
    from nnunetv2_glrp.models import load_plans_context

    _record_writes(rank, out["writes"])
    ctx = load_plans_context(901, configuration)
    for folder, stop in runs:
        run_pretraining(ctx, config, Path(folder), stop_after_epoch=stop)


def _state(folder: Path) -> dict:
    ckpt = torch.load(folder / "checkpoint_latest.pth", weights_only=False)
    return {**{f"encoder.{k}": v for k, v in ckpt["encoder"].items()},
            **{f"heads.{k}": v for k, v in ckpt["heads"].items()}}, ckpt


def _initial_state(ctx, config) -> dict:
    from nnunetv2_glrp.pretraining.inputs import build_models

    torch.manual_seed(config.seed)
    network, heads, _ = build_models(ctx, config)
    return {**{f"encoder.{k}": v for k, v in network.encoder.state_dict().items()},
            **{f"heads.{k}": v for k, v in heads.state_dict().items()}}


def _bias_before_norm(key: str) -> bool:
    """A convolution's bias in a block with InstanceNorm after it (zero gradient up to rounding)."""
    return key.startswith("encoder.") and key.endswith(("conv.bias", "all_modules.0.bias"))


def test_two_ranks_train_the_single_process_checkpoint_resume_and_only_rank0_writes(ctx, tmp_path):
    config = make_config("GLRP", seed=3, **TINY)
    configuration = ctx.configuration
    first = _spawn(_pretrain_job, configuration, config, [(tmp_path / "ddp", None), (tmp_path / "resumed", 0)])
    ckpt_stopped = torch.load(tmp_path / "resumed" / "checkpoint_latest.pth", weights_only=False)
    assert ckpt_stopped["epoch"] == 0 and not (tmp_path / "resumed" / "pretrained_encoder.pth").exists()
    second = _spawn(_pretrain_job, configuration, config, [(tmp_path / "resumed", None)])
    run_pretraining(ctx, config, tmp_path / "single")

    ddp, ddp_ckpt = _state(tmp_path / "ddp")
    single, single_ckpt = _state(tmp_path / "single")
    resumed, resumed_ckpt = _state(tmp_path / "resumed")
    assert ddp.keys() == single.keys() == resumed.keys() and len(ddp) > 10
    initial = _initial_state(ctx, config)
    weights = [k for k in ddp if k.endswith(("weight", "bias")) and not _bias_before_norm(k)]
    update = sum((single[k] - initial[k]).square().sum() for k in weights).sqrt()
    diff = sum((ddp[k] - single[k]).square().sum() for k in weights).sqrt()
    assert update > 0.05 and diff < 1e-3 * update, (float(diff), float(update))  # 2 ranks x 2 slices == 1 x 4
    for k in ddp:  # resumed by new ranks == uninterrupted
        torch.testing.assert_close(resumed[k], ddp[k], rtol=1e-6, atol=1e-7, msg=k)
    assert ddp_ckpt["epoch"] == resumed_ckpt["epoch"] == 1
    losses = [e[k] for e in ddp_ckpt["history"]["epoch"] for k in ("loss", "grp", "lrp")]
    single_losses = [e[k] for e in single_ckpt["history"]["epoch"] for k in ("loss", "grp", "lrp")]
    assert losses == pytest.approx(single_losses, rel=1e-5)
    assert [[e["loss"] for e in c["history"]["epoch"]] for c in (resumed_ckpt,)] == [[e["loss"] for e in
                                                                                      ddp_ckpt["history"]["epoch"]]]
    resolved = json.loads((tmp_path / "ddp" / "config.json").read_text(encoding="utf-8"))["resolved"]
    assert (resolved["world_size"], resolved["batch_per_rank"], resolved["psm_computed_on"]) == (2, 2, "cpu")
    single_resolved = json.loads((tmp_path / "single" / "config.json").read_text(encoding="utf-8"))["resolved"]
    assert (single_resolved["world_size"], single_resolved["psm_computed_on"]) == (1, "data loader")
    log = (tmp_path / "resumed" / "log.txt").read_text(encoding="utf-8")
    assert log.count("resumed from") == 1 and log.count("epoch 2/2 loss") == 1 and "(2 ranks x 2)" in log
    writes = first["writes"] + second["writes"]
    ours = [(r, p) for r, p in writes if Path(p).is_relative_to(tmp_path)]
    assert {r for r, _ in ours} == {0}, sorted({(r, Path(p).name) for r, p in ours if r})
    names = {Path(p).name for _, p in ours}
    assert {"config.json", "log.txt", "checkpoint_latest.pth", "pretrained_encoder.pth"} <= names


@pytest.mark.parametrize("method", ["GLRP", "GCL"])
def test_rank_shares_of_a_batch_are_the_single_process_batch(ctx, method):
    """Two loaders with ``shard`` (0, 2) and (1, 2) and the per-rank batch B serve disjoint halves of the batch a
    single loader with batch 2 B serves: the same slices, the same augmented views (seeded per slice of the global
    batch), the same GCL partitions, for 3 batches across an epoch boundary."""
    from nnunetv2_glrp.data import PretrainingSliceLoader
    from nnunetv2_glrp.pretraining.inputs import pretraining_records
    from nnunetv2_glrp.pretraining.methods import batch_sampler

    records, _ = pretraining_records(ctx)
    config = make_config(method, seed=11, batch_size=8)

    def loader(batch_size, shard):
        return PretrainingSliceLoader(records, batch_size, ctx.patch_size, config.seed, config.augmentation,
                                      iterations_per_epoch=2, sampler=batch_sampler(records, config), shard=shard)

    single, ranks = loader(8, (0, 1)), [loader(4, (r, 2)) for r in range(2)]
    for _ in range(3):
        whole, parts = single.generate_train_batch(), [r.generate_train_batch() for r in ranks]
        assert whole["keys"] == parts[0]["keys"] + parts[1]["keys"]
        assert not set(parts[0]["keys"]) & set(parts[1]["keys"]) or method == "GCL"
        for key in ("data", "positions") + (("partitions",) if method == "GCL" else ()):
            halves = [p[key].reshape(2, 4, *p[key].shape[1:]) for p in parts]  # [views, slices, ...]
            assert torch.equal(whole[key], torch.cat(halves, dim=1).reshape(whole[key].shape)), key
    with pytest.raises(ValueError, match="the rank must lie in"):
        loader(4, (2, 2))


def _ensure_job(rank: int, configuration: str, kwargs: dict, out) -> None:
    from nnunetv2_glrp.finetuning.pretrained_source import obtain_pretrained_encoder
    from nnunetv2_glrp.pretraining import api

    real = api.run_pretraining

    def counting(*args, **kw):
        out[f"runs{rank}"] = out.get(f"runs{rank}", 0) + 1
        return real(*args, **kw)

    api.run_pretraining = counting
    for call in (1, 2):  # as the trainer of every rank asks for the encoder; then again, as another fold would
        path, _ = obtain_pretrained_encoder("Dataset901_ACDC", configuration, kwargs["method"], "nnUNetPlans", "cpu",
                                            "cpu", kwargs["seed"], kwargs["overrides"])
        out[f"path{rank}_{call}"] = os.fspath(path)


@pytest.mark.parametrize("batch_size, world_in_log", [(4, "(2 ranks x 2)"), (3, "(1 ranks x 3)")])
def test_every_rank_asks_for_the_encoder_and_the_pretraining_runs_once(ctx, batch_size, world_in_log):
    """The fine-tuning path under ``nnUNetv2_train -num_gpus 2``: both ranks call ``obtain_pretrained_encoder``.
    A batch the ranks can split is pretrained once, by both ranks together (each rank enters ``run_pretraining``
    once); one they cannot split is pretrained once by the rank that took the lock. A second call reuses it."""
    kwargs = dict(method="GRP", seed=40 + batch_size,
                  overrides=dict(epochs=1, iterations_per_epoch=1, batch_size=batch_size))
    out = _spawn(_ensure_job, ctx.configuration, kwargs)
    runs = [out.get(f"runs{r}", 0) for r in range(WORLD)]
    # split: each rank entered run_pretraining once; not split: exactly one rank did, whichever took the lock first
    assert runs == ([1, 1] if batch_size % WORLD == 0 else runs) and sorted(runs) == ([1, 1] if batch_size % WORLD == 0
                                                                                    else [0, 1]), runs
    paths = {out[f"path{r}_{c}"] for r in range(WORLD) for c in (1, 2)}
    assert len(paths) == 1
    folder = Path(paths.pop()).parent
    log = (folder / "log.txt").read_text(encoding="utf-8")
    assert log.count("pretraining GRP on") == 1 and world_in_log in log and log.count("epoch 1/1 loss") == 1


def test_num_gpus_and_torchrun_launch_two_gloo_ranks(ctx):
    """``nnUNetv2_glrp pretrain -num_gpus 2 -device cpu`` (spawned) and ``torchrun --nproc_per_node 2 -m
    nnunetv2_glrp.cli pretrain`` both pretrain with 2 ranks; an unsplittable batch is refused before any start."""
    import sys

    from nnunet_subprocess import run_checked

    from nnunetv2_glrp.data import data_digest
    from nnunetv2_glrp.pretraining import api, folder_for_config

    base = ["pretrain", "-d", "901", "-c", ctx.configuration, "-m", "GRP", "--epochs", "1", "--iterations", "1",
            "--batch_size", "4"]
    launches = {50: [sys.executable, "-m", "nnunetv2_glrp.cli", *base, "-num_gpus", "2", "-device", "cpu"],
                51: [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                     str(free_port()), "-m", "nnunetv2_glrp.cli", *base, "-device", "cpu"]}
    digest = data_digest(api.data_manifest(ctx.dataset_name))
    for seed, args in launches.items():
        output = run_checked([*args, "--seed", str(seed)], timeout=300)
        folder = folder_for_config(ctx.dataset_name, ctx.configuration, "nnUNetPlans",
                                   make_config("GRP", "cpu", seed, epochs=1, iterations_per_epoch=1, batch_size=4),
                                   digest)
        assert output.count("pretrained encoder (") == 1, output[-2000:]  # printed by rank 0 only
        resolved = json.loads((folder / "config.json").read_text(encoding="utf-8"))["resolved"]
        assert (resolved["world_size"], resolved["batch_per_rank"]) == (2, 2)
        assert (folder / "pretrained_encoder.pth").is_file()
    import subprocess

    from nnunet_subprocess import nnunet_env

    refused = subprocess.run([sys.executable, "-m", "nnunetv2_glrp.cli", *base[:-1], "3", "-num_gpus", "2"],
                             env=nnunet_env(), capture_output=True, encoding="utf-8", timeout=120)
    assert refused.returncode != 0 and "not divisible by the 2 processes" in refused.stderr
