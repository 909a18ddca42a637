"""Checks on probability maps and their fusion across models (weighted mean)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

#: largest deviation of the class sum from 1 that is accepted (nnU-Net may store float16)
SUM_TOLERANCE = 5e-3


def check_probabilities(probs: np.ndarray, case: str, source: str = "") -> None:
    """Raise a ValueError naming ``case`` unless ``probs`` (C, ...) is a finite, non-negative distribution
    over its first axis at every voxel."""
    where = f" ({source})" if source else ""
    if probs.ndim < 2 or probs.shape[0] < 2:
        raise ValueError(f"case {case}{where}: probabilities of shape {probs.shape} need (classes >= 2, *image)")
    if not np.all(np.isfinite(probs)):
        raise ValueError(f"case {case}{where}: probabilities contain {int((~np.isfinite(probs)).sum())} "
                         "non-finite values")
    if probs.min() < 0:
        raise ValueError(f"case {case}{where}: negative probabilities (min {float(probs.min()):.3g})")
    deviation = float(np.abs(probs.sum(0, dtype=np.float64) - 1.0).max())
    if deviation > SUM_TOLERANCE:
        raise ValueError(f"case {case}{where}: probabilities do not sum to 1 over the classes "
                         f"(largest deviation {deviation:.3g})")


def fuse_probabilities(probs: Sequence[np.ndarray], case: str, weights: Sequence[float] | None = None,
                       names: Sequence[str] | None = None) -> np.ndarray:
    """The (weighted) mean of several models' probabilities of one case, float32 (C, *image).

    Every input must have the same class count and the same shape; weights are positive and are
    normalised to sum to 1. ``names`` (one per model) only go into error messages."""
    if not probs:
        raise ValueError(f"case {case}: no probabilities to fuse")
    names = list(names) if names is not None else [f"model {i}" for i in range(len(probs))]
    weights = np.ones(len(probs)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(probs) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
        raise ValueError(f"case {case}: need one positive weight per model ({len(probs)}), got {list(weights)}")
    first = probs[0]
    for name, p in zip(names, probs):
        check_probabilities(p, case, name)
        if p.shape[0] != first.shape[0]:
            raise ValueError(f"case {case}: {name} has {p.shape[0]} classes, {names[0]} has {first.shape[0]}")
        if p.shape != first.shape:
            raise ValueError(f"case {case}: {name} probabilities have shape {p.shape}, {names[0]} {first.shape}")
    weights = weights / weights.sum()
    fused = np.zeros(first.shape, dtype=np.float64)
    for w, p in zip(weights, probs):
        fused += w * p
    return fused.astype(np.float32)
