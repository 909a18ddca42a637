"""A differentiable all-gather for contrastive losses over the global batch of a DDP run.

Each rank holds a shard [B, ...] of the embeddings (or position labels, PSM input views); the contrastive loss
must see all N x B of them as negatives. ``all_gather_with_grad`` returns the rank-major concatenation [N B, ...]
and, in backward, sums the incoming gradients over the ranks (all-reduce) and hands each rank the rows of its own
shard. Every rank computes the same global loss L, so the summed gradient of a shard is N x dL/dshard; DDP's mean of
the parameter gradients over the N ranks then yields exactly the single-process gradient of L on the concatenated
batch (tests/test_pretraining_distributed.py checks this with 2 gloo processes).

Only this building block exists so far: the ``-num_gpus`` / torchrun launch, sharded samplers and rank-0 writing
(issue 21, item 3) are not built yet.
"""

from __future__ import annotations

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
