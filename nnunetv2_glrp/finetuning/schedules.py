"""Learning-rate schedules in nnU-Net's style (``step(epoch)`` sets the lr in closed form) + warm-up."""

from __future__ import annotations

import math

import torch


class CosineLRScheduler(torch.optim.lr_scheduler._LRScheduler):
    """lr = initial_lr * 0.5 * (1 + cos(pi * step / max_steps)); closed form, so resuming is exact."""

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, max_steps: int,
                 current_step: int | None = None) -> None:
        self.optimizer = optimizer
        self.initial_lr = initial_lr
        self.max_steps = max(1, max_steps)
        self.ctr = 0
        super().__init__(optimizer, current_step if current_step is not None else -1)

    def step(self, current_step: int | None = None) -> None:
        if current_step is None or current_step == -1:
            current_step = self.ctr
            self.ctr += 1
        new_lr = self.initial_lr * 0.5 * (1.0 + math.cos(math.pi * min(current_step, self.max_steps) / self.max_steps))
        for group in self.optimizer.param_groups:
            group["lr"] = new_lr
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]

    def get_last_lr(self) -> list[float]:
        return self._last_lr


def warmup_factor(global_iteration: int, warmup_iterations: int) -> float:
    """Linear warm-up multiplier (iteration i of W gets (i+1)/W; 1 afterwards or when W = 0)."""
    if warmup_iterations <= 0 or global_iteration >= warmup_iterations:
        return 1.0
    return (global_iteration + 1) / warmup_iterations
