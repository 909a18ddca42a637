"""Slice similarity d_ij from slice position labels (GLRP Eq. 1 and the GLRP-cl* ablation).

A slice n of a short-axis stack with m slices has the position label x = n / m in (0, 1],
counted from base to apex. Two kinds of similarity are provided:

- ``"inverse-quadratic"`` (the paper's d_ij): ``1 / (1 + a (x_i - x_j)^2)`` with a = 15, so 1.0 for
  the same slice and 0.0625 for base against apex.
- ``"linear"`` (GLRP-cl*): ``1 - |x_i - x_j|``. The paper prints ``x_i - x_j``, which is negative
  for half the pairs and is no weight; we use the absolute difference.
"""

from __future__ import annotations

import torch

SIMILARITY_KINDS = ("inverse-quadratic", "linear")


def slice_similarity(
    positions: torch.Tensor, a: float = 15.0, kind: str = "inverse-quadratic"
) -> torch.Tensor:
    """Pairwise slice similarity.

    Args:
        positions: [N] position labels in [0, 1] (the paper's labels lie in (0, 1]; 0 is accepted).
        a: steepness of the inverse-quadratic kind (paper: 15). Ignored for ``"linear"``.
        kind: ``"inverse-quadratic"`` or ``"linear"``.

    Returns:
        [N, N] float32 (or float64 for float64 input) symmetric matrix with ones on the diagonal,
        values in (0, 1] for the inverse-quadratic kind and [0, 1] for the linear kind.
    """
    if kind not in SIMILARITY_KINDS:
        raise ValueError(f"slice_similarity: kind must be one of {SIMILARITY_KINDS}, got {kind!r}")
    positions = torch.as_tensor(positions)
    if positions.ndim != 1:
        raise ValueError(
            f"slice_similarity: positions must be 1-D [N], got shape {tuple(positions.shape)}"
        )
    if not positions.is_floating_point() or positions.dtype in (torch.float16, torch.bfloat16):
        positions = positions.float()
    if not bool(torch.isfinite(positions).all()):
        raise ValueError("slice_similarity: positions contain NaN or infinite values")
    if positions.numel() and (bool((positions < 0).any()) or bool((positions > 1).any())):
        raise ValueError(
            "slice_similarity: positions must lie in [0, 1] (x = n/m counted from the base), got "
            f"min {float(positions.min()):.4g}, max {float(positions.max()):.4g}"
        )
    diff = positions[:, None] - positions[None, :]
    if kind == "linear":
        return 1.0 - diff.abs()
    if not a > 0:
        raise ValueError(f"slice_similarity: a must be positive, got {a}")
    return 1.0 / (1.0 + a * diff.square())
