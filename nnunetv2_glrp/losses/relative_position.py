"""Weighted InfoNCE over pair weights: the relative-position loss shared by GRP and LRP.

Two formulations (see docs/method.md section 3 and docs/losses.md):

- ``"soft-target"`` (default, the intended loss): the pair weights of anchor i, normalised over
  j != i, are the target distribution of a cross-entropy against softmax_{k != i}(s_ik / tau):

      L_i = - sum_{j != i} w_ij log softmax_{k != i}(s_ik / tau)_j,  w_ij = W_ij / sum_{k != i} W_ik

  Its optimum is s_ij - s_ik = tau ln(W_ij / W_ik): similarity graded by the weights.
- ``"paper-literal"``: GLRP Eq. 2 as printed,

      L_i = -1/(N-1) sum_{j != i} log( W_ij e^{s_ij/tau} / sum_{k != i} W_ik e^{s_ik/tau} )

  a cross-entropy against a uniform target over logits s/tau + log W. Its optimum is
  s_ij - s_ik = -tau ln(W_ij / W_ik): high-weight pairs are pushed apart. Kept for the ablation.

Both return the mean over anchors. s_ij is the cosine similarity (z is L2-normalised here).

Numerics: everything is computed in float32 with autocast disabled locally, whatever the input
dtype; the diagonal is excluded by masking the logits with -inf before log_softmax / logsumexp.

Choices where the spec is silent: an anchor whose off-diagonal weights are all zero has no target
distribution; in the soft-target form it is left out of the mean (it still serves as a negative
for the other anchors), and if no anchor is left a ValueError is raised. The paper-literal form
takes log W_ij and therefore needs strictly positive off-diagonal weights (ValueError otherwise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

FORMULATIONS = ("soft-target", "paper-literal")


def _validate(z: torch.Tensor, weights: torch.Tensor, tau: float, formulation: str) -> None:
    if formulation not in FORMULATIONS:
        raise ValueError(
            f"relative_position_loss: formulation must be one of {FORMULATIONS}, "
            f"got {formulation!r}"
        )
    if not tau > 0:
        raise ValueError(f"relative_position_loss: tau must be positive, got {tau}")
    if z.ndim != 2:
        raise ValueError(f"relative_position_loss: z must be [N, D], got shape {tuple(z.shape)}")
    n = z.shape[0]
    if n < 2:
        raise ValueError(f"relative_position_loss: need at least 2 embeddings, got N={n}")
    if tuple(weights.shape) != (n, n):
        raise ValueError(
            f"relative_position_loss: weights must be [N, N] = [{n}, {n}] to match z, "
            f"got shape {tuple(weights.shape)}"
        )


def _cosine_logits(z: torch.Tensor, tau: float) -> tuple[torch.Tensor, torch.Tensor]:
    """[N, D] -> (logits s/tau with -inf on the diagonal [N, N], diagonal mask [N, N])."""
    zn = F.normalize(z, dim=1)
    logits = zn @ zn.T / tau
    eye = torch.eye(z.shape[0], dtype=torch.bool, device=z.device)
    return logits.masked_fill(eye, float("-inf")), eye


def relative_position_loss(
    z: torch.Tensor, weights: torch.Tensor, tau: float = 0.1, formulation: str = "soft-target"
) -> torch.Tensor:
    """Weighted InfoNCE of embeddings against pair weights.

    Args:
        z: [N, D] embeddings (any float dtype; normalised inside, cosine similarity).
        weights: [N, N] non-negative pair weights; the diagonal is ignored. Treated as constants
            (detached): they are targets, not something to optimise.
        tau: temperature (paper: 0.1).
        formulation: ``"soft-target"`` (default) or ``"paper-literal"``.

    Returns:
        Scalar float32 loss, mean over anchors.
    """
    _validate(z, weights, tau, formulation)
    device_type = z.device.type if z.device.type in ("cpu", "cuda", "xpu", "mps") else "cpu"
    with torch.autocast(device_type=device_type, enabled=False):
        z32 = z.float()
        w = weights.detach().to(device=z.device, dtype=torch.float32)
        logits, eye = _cosine_logits(z32, tau)
        w = w.masked_fill(eye, 0.0)
        if not bool(torch.isfinite(w).all()):
            raise ValueError("relative_position_loss: weights contain NaN or infinite values")
        if bool((w < 0).any()):
            raise ValueError(
                f"relative_position_loss: weights must be non-negative, min is {float(w.min()):.4g}"
            )
        if formulation == "soft-target":
            return _soft_target(logits, w, eye)
        return _paper_literal(logits, w, eye)


def _soft_target(logits: torch.Tensor, w: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    row_sum = w.sum(dim=1)
    valid = row_sum > 0
    if not bool(valid.any()):
        raise ValueError(
            "relative_position_loss: every anchor has zero off-diagonal weight; "
            "the soft-target distribution is undefined"
        )
    target = w / row_sum.clamp_min(torch.finfo(w.dtype).tiny)[:, None]
    log_prob = F.log_softmax(logits, dim=1).masked_fill(eye, 0.0)
    per_anchor = -(target * log_prob).sum(dim=1)
    return per_anchor[valid].mean()


def _paper_literal(logits: torch.Tensor, w: torch.Tensor, eye: torch.Tensor) -> torch.Tensor:
    off_diagonal = ~eye
    if bool((w[off_diagonal] <= 0).any()):
        raise ValueError(
            "relative_position_loss: formulation='paper-literal' takes log of every off-diagonal "
            "weight and needs them strictly positive; got zero weights (use 'soft-target', or "
            "map the similarities to strictly positive weights)"
        )
    n = logits.shape[0]
    log_w = torch.log(w.masked_fill(eye, 1.0)).masked_fill(eye, float("-inf"))
    weighted = logits + log_w  # -inf on the diagonal
    log_prob = (weighted - torch.logsumexp(weighted, dim=1, keepdim=True)).masked_fill(eye, 0.0)
    per_anchor = -log_prob.sum(dim=1) / (n - 1)
    return per_anchor.mean()


def soft_target_entropy(weights: torch.Tensor) -> torch.Tensor:
    """Floor of the soft-target loss: mean over anchors of the entropy of their target distribution.

    The soft-target loss of anchor i is H(w_i) + KL(w_i || q_i) >= H(w_i), with w_i the normalised
    off-diagonal weights and q_i the softmax over similarities; so ``loss - soft_target_entropy(W)``
    (same anchors, same weights) is the mean KL divergence: 0 when the embeddings fit the targets,
    the share of the loss that pretraining can still remove.

    Args:
        weights: [N, N] non-negative pair weights (diagonal ignored), as given to
            :func:`relative_position_loss`.

    Returns:
        Scalar float32: mean over the anchors with a positive weight sum (those the loss averages).
    """
    w = weights.detach().float()
    eye = torch.eye(w.shape[0], dtype=torch.bool, device=w.device)
    w = w.masked_fill(eye, 0.0)
    row_sum = w.sum(dim=1)
    valid = row_sum > 0
    if not bool(valid.any()):
        raise ValueError("soft_target_entropy: every anchor has zero off-diagonal weight")
    p = w[valid] / row_sum[valid, None]
    return -(torch.where(p > 0, p * torch.log(p), torch.zeros_like(p))).sum(dim=1).mean()
