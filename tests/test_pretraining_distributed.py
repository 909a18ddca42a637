"""DDP building block: with 2 gloo processes on the CPU the contrastive loss over all-gathered embeddings and
positions, and the rank-averaged parameter gradients, equal the single-process ones on the concatenated batch."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from nnunetv2_glrp.losses import relative_position_loss, slice_similarity
from nnunetv2_glrp.pretraining.distributed import all_gather_with_grad

WORLD, SHARD = 2, 6


def _problem():
    g = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 5))
    x = torch.randn(WORLD * SHARD, 8, generator=g)
    pos = torch.rand(WORLD * SHARD, generator=g)
    return model, x, pos


def _loss(model, x, pos, gather):
    z = gather(model(x))
    p = gather(pos)
    return relative_position_loss(z, slice_similarity(p, a=15.0), tau=0.1)


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=WORLD)
    try:
        torch.set_num_threads(1)
        model, x, pos = _problem()
        rows = slice(rank * SHARD, (rank + 1) * SHARD)
        loss = _loss(model, x[rows], pos[rows], all_gather_with_grad)
        loss.backward()
        grads = []
        for p in model.parameters():  # what DDP does: the mean over the ranks
            dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
            grads.append(p.grad / WORLD)
        out[rank] = (loss.detach(), [g.clone() for g in grads])
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_give_the_single_process_loss_and_gradients():
    model, x, pos = _problem()
    loss = _loss(model, x, pos, lambda t: t)
    loss.backward()
    ref = [p.grad.clone() for p in model.parameters()]
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_worker, args=(_free_port(), out), nprocs=WORLD, join=True)
        out = dict(out)
    for rank in range(WORLD):
        rank_loss, grads = out[rank]
        torch.testing.assert_close(rank_loss, loss.detach(), rtol=1e-6, atol=1e-6)
        for g, r in zip(grads, ref):
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-6)
    assert all_gather_with_grad(x) is x  # no process group: the identity
