"""Starting the ranks of a distributed pretraining: ``-num_gpus N`` (spawned like nnU-Net's ``-num_gpus``) or torchrun.

``spawn(fn, N, device, *args)`` does what ``nnunetv2.run.run_training`` does for ``-num_gpus``: ``MASTER_ADDR``
localhost, ``MASTER_PORT`` a free port (unless set), ``torch.multiprocessing.spawn`` of N processes, each joining
the process group as rank r (``init_process_group``) and using GPU r, then ``fn(*args)``. ``from_environment(device)``
joins the group torchrun describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``PORT``). Backend:
nccl on CUDA, gloo on the CPU (unlike nnU-Net, CPU ranks are allowed: that is how the tests run 2 ranks).
"""

from __future__ import annotations

import os
import socket
from typing import Callable

import torch
import torch.distributed as dist


def free_port() -> int:
    """A free TCP port on this machine (nnU-Net's ``find_free_network_port``)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def backend_for(device: str) -> str:
    return "nccl" if str(device).startswith("cuda") else "gloo"


def _join(rank: int, world: int, device: str, local_rank: int) -> None:
    if str(device).startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            raise RuntimeError(f"rank {rank} needs GPU {local_rank}, but only {torch.cuda.device_count()} are visible")
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend_for(device), rank=rank, world_size=world)


def _spawned(rank: int, world: int, device: str, fn: Callable, args: tuple) -> None:
    _join(rank, world, device, rank)
    try:
        fn(*args)
    finally:
        dist.destroy_process_group()


def spawn(fn: Callable, num_processes: int, device: str, *args) -> None:
    """Run ``fn(*args)`` on ``num_processes`` ranks (``fn`` and ``args`` picklable), as nnU-Net's ``-num_gpus``."""
    if num_processes < 1:
        raise ValueError(f"-num_gpus must be >= 1, got {num_processes}")
    if str(device).startswith("cuda") and num_processes > torch.cuda.device_count():
        raise ValueError(f"-num_gpus {num_processes}: only {torch.cuda.device_count()} GPUs are visible")
    os.environ["MASTER_ADDR"] = "localhost"
    os.environ.setdefault("MASTER_PORT", str(free_port()))
    torch.multiprocessing.spawn(_spawned, args=(num_processes, device, fn, args), nprocs=num_processes, join=True)


def launched_by_torchrun() -> bool:
    """Whether the environment describes a process group of more than one rank (torchrun sets it)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ


def from_environment(device: str) -> None:
    """Join the process group torchrun describes (a no-op when one is already initialised)."""
    if dist.is_initialized():
        return
    _join(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), device, int(os.environ.get("LOCAL_RANK", 0)))
