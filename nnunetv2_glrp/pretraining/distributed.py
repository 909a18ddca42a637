"""Collectives of a distributed (DDP) pretraining: the global batch seen by every rank, averaged gradients.

Design (issue 21, item 3). ``config.batch_size`` is the GLOBAL batch, as in nnU-Net's ``-num_gpus`` (which splits the
plans' batch size over the GPUs): each of N ranks draws ``batch_size / N`` slices, so one cache entry is the same
pretraining on any number of GPUs (equal to float tolerance). Every rank's loader draws the same global batch from
one seeded generator and keeps its contiguous share (``data.loader.PretrainingSliceLoader``, ``shard``); each
slice's two views are augmented from a seed of (run seed, epoch, batch, the slice's place in the global batch), so
rank r's share is exactly what a single process with the global batch makes of those slices.

A local batch has the layout [first views of its B slices, their second views] (patch rows: view-major, g^2 per
view). ``RankGroup.gather`` all-gathers a tensor of that layout and reorders it to the single-process layout of the
global batch [first views of all N B slices (rank-major), their second views], differentiably: the pooled features
entering the projection heads (so the embeddings, and the BatchNorm1d statistics of the heads, are those of the
global batch), the position labels, GCL's partitions and the PSM input views (the PSM is then computed over the
global batch on the device, in the step). Every rank computes the same global loss L on the gathered tensors;
``all_gather_with_grad`` sums the incoming gradients over the ranks in backward (N x dL/dshard), and
``average_gradients`` divides the summed parameter gradients by N (the heads, run on the global batch on every rank,
have the same gradient on each), which yields exactly dL/dtheta of the single process: what DDP's gradient
all-reduce does. The step cuts the autograd graph at the embeddings and calls the encoder's stages directly, so there
is no module forward for ``DistributedDataParallel`` to wrap: one flat all-reduce after the backward does its work
(without DDP's overlap of communication and backward).
tests/test_pretraining_distributed.py and tests/test_pretraining_ddp.py check both equalities with 2 gloo processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.distributed as dist


class _AllGather(torch.autograd.Function):
    @staticmethod
    def forward(ctx, shard: torch.Tensor) -> torch.Tensor:
        world, rank = dist.get_world_size(), dist.get_rank()
        ctx.rank, ctx.rows = rank, shard.shape[0]
        parts = [torch.empty_like(shard) for _ in range(world)]
        dist.all_gather(parts, shard.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.rows:(ctx.rank + 1) * ctx.rows]


def all_gather_with_grad(shard: torch.Tensor) -> torch.Tensor:
    """[B, ...] on each of N ranks -> [N B, ...] rank-major, differentiable (see the module docstring); the shard
    itself when no process group is initialised. All ranks must pass shards of the same shape."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return shard
    return _AllGather.apply(shard)


def process_group_size() -> tuple[int, int]:
    """(rank, world size) of the initialised default process group; (0, 1) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


@dataclass(frozen=True)
class RankGroup:
    """The ranks one pretraining runs on: (0, 1) is a single process, every method then a no-op."""

    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0: the only rank that writes files (checkpoints, logs, config.json, the cache record)."""
        return self.rank == 0

    def gather(self, local: torch.Tensor) -> torch.Tensor:
        """Local [2 M, ...] (first-view rows, then second-view rows) -> global [2 N M, ...] in the single-process
        layout of the global batch (first-view rows of ranks 0..N-1, then their second-view rows); differentiable."""
        if self.world == 1:
            return local
        full = all_gather_with_grad(local)
        rows = local.shape[0] // 2
        if 2 * rows != local.shape[0]:
            raise ValueError(f"a batch tensor must hold two views per slice, got {local.shape[0]} rows")
        return full.reshape(self.world, 2, rows, *local.shape[1:]).transpose(0, 1).reshape(-1, *local.shape[1:])

    def average_gradients(self, params) -> None:
        """Replace each gradient by its mean over the ranks (one flat all-reduce, as DDP's buckets do)."""
        if self.world == 1:
            return
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= self.world
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()

    def broadcast_parameters(self, modules) -> None:
        """Rank 0's parameters and buffers on every rank (the same start, whatever each rank initialised)."""
        if self.world == 1:
            return
        for module in modules:
            for t in list(module.parameters()) + list(module.buffers()):
                dist.broadcast(t.data, src=0)

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast_flag(self, value: bool) -> bool:
        """Rank 0's ``value`` on every rank."""
        if self.world == 1:
            return bool(value)
        box = [bool(value)]
        dist.broadcast_object_list(box, src=0)
        return bool(box[0])


SINGLE = RankGroup()


def current_rank_group() -> RankGroup:
    """The ranks of the initialised default process group (``SINGLE`` without one)."""
    return RankGroup(*process_group_size())
