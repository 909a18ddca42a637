"""One pretraining epoch: the SGD steps over the augmenter's batches, their timing and loss statistics.

``run_epoch`` takes the step as a function of (batch, timer), so a method with another loss or a
distributed step reuses the epoch unchanged.
"""

from __future__ import annotations

import time
from typing import Callable, Iterator

import numpy as np
import torch
from nnunetv2_glrp.progress import tqdm

from nnunetv2_glrp.pretraining.step import StepTimer

Step = Callable[[dict, StepTimer], dict[str, float]]


def epoch_loss_statistics(terms: list[dict[str, float]]) -> dict[str, float]:
    """Per-epoch summary of the iteration losses: mean of each term and of each term's excess over its floor
    (``*_excess``, the KL divergence) and of the excess collapsed embeddings would have
    (``*_collapse_excess``), std/min/max/last of the total, and the per-iteration excess of each term
    (``*_excess_per_iteration``, for the loss-curve plot)."""
    out = {}
    for key in ("loss", "grp", "lrp", "grp_excess", "lrp_excess", "grp_collapse_excess", "lrp_collapse_excess"):
        values = np.array([t.get(key, np.nan) for t in terms], dtype=float)
        out[key] = float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")
    total = np.array([t["loss"] for t in terms], dtype=float)
    out.update(loss_std=float(total.std()), loss_min=float(total.min()), loss_max=float(total.max()),
               loss_last=float(total[-1]), iterations=len(terms))
    for key in ("grp_excess", "lrp_excess"):
        out[f"{key}_per_iteration"] = [float(t.get(key, np.nan)) for t in terms]
    return out


def run_epoch(step: Step, batches: Iterator[dict], iterations: int, batch_size: int, scheduler,
              device: torch.device, desc: str) -> tuple[dict, StepTimer]:
    """``iterations`` steps of ``batch_size`` slices, the scheduler stepped after each (also after a step the fp16
    gradient scaler skipped: the schedule is one of iterations, not of updates); returns (the epoch's time split, loss
    statistics and ``skipped_steps``, the steps whose update the scaler skipped, and its timer)."""
    timer = StepTimer(device)
    terms = []
    t_epoch = time.perf_counter()
    bar = tqdm(range(iterations), desc=desc, leave=False, disable=None)
    for _ in bar:
        out = step(next(batches), timer)
        scheduler.step()
        terms.append(out)
        bar.set_postfix(loss=f"{out['loss']:.4f}")
    seconds = time.perf_counter() - t_epoch
    stats = {"seconds": seconds, "slices_per_s": iterations * batch_size / seconds,
             "step_seconds": timer.step, "loss_fn_share": timer.loss_share,
             "loss_fn_forward_seconds": timer.loss_forward, "loss_fn_backward_seconds": timer.loss_backward,
             "psm_seconds": timer.psm, "skipped_steps": int(sum(t.get("skipped", 0.0) for t in terms)),
             **epoch_loss_statistics(terms)}
    return stats, timer

