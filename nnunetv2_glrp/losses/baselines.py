"""SimCLR, GCL and PCL as pair weights over the weighted InfoNCE of :mod:`.relative_position`.

All three baselines are :func:`relative_position_loss` (soft-target form) with 0/1 pair weights:

- SimCLR (Chen et al. 2020, NT-Xent): W_ij = 1 iff j is the other view of i's slice.
- PCL (Zeng et al. 2021): W_ij = 1 iff |x_i - x_j| < threshold (x = slice position in [0, 1]).
- GCL (Chaitanya et al. 2020, strategy G^D): W_ij = 1 iff i and j lie in the same partition of their
  volumes (the sampler draws several volumes x one slice per partition).

Normalising a 0/1 row over its P(i) positives gives the target w_ij = 1/|P(i)| on the positives, and
the soft-target cross-entropy becomes SupCon's L_out (Khosla et al. 2020, Eq. 2):

    L_i = -1/|P(i)| sum_{p in P(i)} log( e^{s_ip/tau} / sum_{k != i} e^{s_ik/tau} )

which for a single positive (SimCLR) is NT-Xent. The tests check both against loops written from the
papers' formulas. Views are laid out as in the pretraining batches: z = [2N, D], rows i and i + N are
the two views of slice i.

Differences from the public code (named here and in docs/losses.md):

- PCL (github.com/dewenzeng/positional_cl, ``SupConLoss``): the same loss and mask (strict ``<``), but
  the original multiplies the loss by ``temperature / base_temperature`` (0.1 / 0.07 with its defaults,
  a constant factor); we do not. The original drops nothing when an anchor has no positive (0/0 = NaN);
  here every anchor has its other view, and an anchor without positives would be left out of the mean.
- GCL (github.com/krishnabits001/domain_specific_cl, ``global_loss_exp_no=2``): the original sums one
  two-sided InfoNCE term per chosen positive pair, -log(e^{s_ip} / (e^{s_ip} + sum_{negatives} e^{s_ik})),
  whose denominator leaves out the anchor's other positives (all same-partition images are pruned from
  the negatives), and pairs each image with its augmented view and with one image of the same partition
  in one other volume (fixed index offsets), summed. We use SupCon's form over all same-partition views
  of the batch (mean over positives, other positives in the denominator), as the PCL authors' own GCL
  baseline does (``contrastive_method='gcl'`` in their code), and the mean over anchors.
- SimCLR: exactly NT-Xent over the 2N views (the PCL repository's ``'simclr'`` mode is the same).

Cosine similarity, float32 with autocast off, and the mean over anchors come from the core.
"""

from __future__ import annotations

import torch

from .relative_position import relative_position_loss


def _check_views(z: torch.Tensor, name: str) -> int:
    if z.ndim != 2 or z.shape[0] < 2 or z.shape[0] % 2:
        raise ValueError(f"{name}: z must be [2N, D] (views i and i + N of slice i), got shape {tuple(z.shape)}")
    return z.shape[0]


def _check_labels(labels: torch.Tensor, n: int, name: str, what: str) -> None:
    if labels.ndim != 1 or labels.shape[0] != n:
        raise ValueError(f"{name}: {what} must be [2N] = [{n}] to match z, got shape {tuple(labels.shape)}")


def partner_weights(n_views: int, device: torch.device | str | None = None) -> torch.Tensor:
    """SimCLR pair weights: [2N, 2N] float32, 1 at (i, i + N) and (i + N, i), 0 elsewhere."""
    if n_views < 2 or n_views % 2:
        raise ValueError(f"partner_weights: need an even number 2N >= 2 of views, got {n_views}")
    half = n_views // 2
    idx = torch.arange(n_views, device=device)
    return (idx[None, :] == (idx[:, None] + half) % n_views).float()


def position_threshold_weights(positions: torch.Tensor, threshold: float = 0.35) -> torch.Tensor:
    """PCL pair weights: [N, N] float32, 1 where |x_i - x_j| < threshold (strict, diagonal included).

    positions: [N] slice positions in [0, 1]."""
    positions = torch.as_tensor(positions)
    if positions.ndim != 1:
        raise ValueError(f"position_threshold_weights: positions must be [N], got {tuple(positions.shape)}")
    if not threshold > 0:
        raise ValueError(f"position_threshold_weights: threshold must be positive, got {threshold}")
    x = positions.double()
    if not bool(torch.isfinite(x).all()) or (x.numel() and (bool((x < 0).any()) or bool((x > 1).any()))):
        raise ValueError("position_threshold_weights: positions must be finite and lie in [0, 1]")
    return ((x[:, None] - x[None, :]).abs() < threshold).float()


def same_partition_weights(partitions: torch.Tensor) -> torch.Tensor:
    """GCL pair weights: [N, N] float32, 1 where partitions[i] == partitions[j] (integer labels [N])."""
    partitions = torch.as_tensor(partitions)
    if partitions.ndim != 1 or partitions.is_floating_point() or partitions.dtype == torch.bool:
        raise ValueError("same_partition_weights: partitions must be integer labels [N], got "
                         f"{partitions.dtype} {tuple(partitions.shape)}")
    return (partitions[:, None] == partitions[None, :]).float()


def simclr_loss(z: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """NT-Xent (SimCLR): each view's only positive is the other view of its slice.

    Args:
        z: [2N, D] embeddings; rows i and i + N are the two views of slice i.
        tau: temperature (0.1 for parity with GLRP; SimCLR's paper tunes it).

    Returns:
        Scalar float32, mean over the 2N anchors.
    """
    n = _check_views(z, "simclr_loss")
    return relative_position_loss(z, partner_weights(n, z.device), tau=tau)


def positional_contrastive_loss(z: torch.Tensor, positions: torch.Tensor, threshold: float = 0.35,
                                tau: float = 0.1) -> torch.Tensor:
    """PCL: supervised-contrastive loss with positives |x_i - x_j| < threshold (self excluded).

    Args:
        z: [2N, D] embeddings (views i and i + N of slice i; any layout works, positives follow positions).
        positions: [2N] slice positions in [0, 1] (both views of a slice share the label).
        threshold: positive pairs have |dx| strictly below it (0.35 on ACDC in the PCL paper).
        tau: temperature.

    Returns:
        Scalar float32, mean over anchors of the mean over positives of -log softmax_{k != i}(s_ik/tau).
    """
    n = _check_views(z, "positional_contrastive_loss")
    positions = torch.as_tensor(positions, device=z.device)
    _check_labels(positions, n, "positional_contrastive_loss", "positions")
    return relative_position_loss(z, position_threshold_weights(positions, threshold), tau=tau)


def global_contrastive_loss(z: torch.Tensor, partitions: torch.Tensor, tau: float = 0.1) -> torch.Tensor:
    """GCL (G^D): supervised-contrastive loss with positives in the same volume partition (self excluded).

    Args:
        z: [2N, D] embeddings (views i and i + N of slice i).
        partitions: [2N] integer partition index of each view's slice in its volume (0..P-1).
        tau: temperature.

    Returns:
        Scalar float32, mean over anchors of the mean over positives of -log softmax_{k != i}(s_ik/tau).
    """
    n = _check_views(z, "global_contrastive_loss")
    partitions = torch.as_tensor(partitions, device=z.device)
    _check_labels(partitions, n, "global_contrastive_loss", "partitions")
    return relative_position_loss(z, same_partition_weights(partitions), tau=tau)
