"""GLRP's global (GRP) and local (LRP) relative-position losses and their combination.

GRP: the 2N projected embeddings of 2N augmented views, weighted by the slice similarity d_ij of
their position labels. LRP: the 9 * 2N patch embeddings (3 x 3 patches of each view's encoder
feature map), weighted by PSM(l, m) * d_ij where i, j are the views of patches l and m. Both are
:func:`relative_position_loss`. The total is lambda1 L_GRP + lambda2 L_LRP.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .relative_position import relative_position_loss
from .slice_similarity import slice_similarity


def global_relative_position_loss(
    z: torch.Tensor,
    positions: torch.Tensor,
    a: float = 15.0,
    tau: float = 0.1,
    kind: str = "inverse-quadratic",
    formulation: str = "soft-target",
) -> torch.Tensor:
    """GRP loss.

    Args:
        z: [2N, D] projected embeddings of the 2N views.
        positions: [2N] position labels in [0, 1] of the views' slices (two views of one slice share
            the label, hence d = 1 for them).
        a, kind: see :func:`slice_similarity`. tau, formulation: see :func:`relative_position_loss`.

    Returns:
        Scalar float32 loss.
    """
    positions = torch.as_tensor(positions, device=z.device)
    if z.ndim != 2 or positions.ndim != 1 or positions.shape[0] != z.shape[0]:
        raise ValueError(
            "global_relative_position_loss: need z [2N, D] and positions [2N] with the same 2N, "
            f"got z {tuple(z.shape)} and positions {tuple(positions.shape)}"
        )
    d = slice_similarity(positions, a=a, kind=kind)
    return relative_position_loss(z, d, tau=tau, formulation=formulation)


def local_pair_weights(
    psm: torch.Tensor, slice_of_patch: torch.Tensor, d: torch.Tensor
) -> torch.Tensor:
    """LRP pair weights PSM(l, m) * d_{view(l), view(m)}.

    Args:
        psm: [P, P] patch-similarity weights (e.g. from
            ``nnunetv2_glrp.similarity.patch_ssim_matrix``), non-negative.
        slice_of_patch: [P] integer index of each patch's view into the rows of d (for the
            view-major patch order of ``patch_ssim_matrix``: ``arange(V).repeat_interleave(9)``).
        d: [V, V] slice similarity of the V = 2N views.

    Returns:
        [P, P] float32 weights.
    """
    slice_of_patch = torch.as_tensor(slice_of_patch, device=psm.device)
    if psm.ndim != 2 or psm.shape[0] != psm.shape[1]:
        raise ValueError(f"local_pair_weights: psm must be [P, P], got {tuple(psm.shape)}")
    if slice_of_patch.ndim != 1 or slice_of_patch.shape[0] != psm.shape[0]:
        raise ValueError(
            f"local_pair_weights: slice_of_patch must be [P] = [{psm.shape[0]}], "
            f"got {tuple(slice_of_patch.shape)}"
        )
    if slice_of_patch.is_floating_point():
        raise ValueError("local_pair_weights: slice_of_patch must hold integer view indices")
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"local_pair_weights: d must be [V, V], got {tuple(d.shape)}")
    if slice_of_patch.numel() and (
        int(slice_of_patch.min()) < 0 or int(slice_of_patch.max()) >= d.shape[0]
    ):
        raise ValueError(
            f"local_pair_weights: slice_of_patch indices must lie in [0, {d.shape[0]}), got "
            f"[{int(slice_of_patch.min())}, {int(slice_of_patch.max())}]"
        )
    d = d.to(device=psm.device, dtype=torch.float32)
    idx = slice_of_patch.long()
    return psm.float() * d[idx][:, idx]


@dataclass(frozen=True)
class LossWeights:
    """lambda1 (GRP), lambda2 (LRP) and the slice-similarity kind of one pretraining method."""

    lambda_global: float = 0.5
    lambda_local: float = 0.5
    similarity_kind: str = "inverse-quadratic"

    def __post_init__(self) -> None:
        if self.lambda_global < 0 or self.lambda_local < 0:
            raise ValueError(f"LossWeights: lambdas must be non-negative, got {self}")
        if self.lambda_global == 0 and self.lambda_local == 0:
            raise ValueError("LossWeights: at least one of lambda_global, lambda_local must be > 0")


def glrp_loss(
    l_grp: torch.Tensor | None,
    l_lrp: torch.Tensor | None,
    lambdas: tuple[float, float] | LossWeights = (0.5, 0.5),
) -> torch.Tensor:
    """lambda1 * L_GRP + lambda2 * L_LRP.

    A term whose lambda is 0 is skipped (it may be None, and a NaN there cannot leak in); a term
    with a positive lambda must be given.
    """
    if isinstance(lambdas, LossWeights):
        lambdas = (lambdas.lambda_global, lambdas.lambda_local)
    total: torch.Tensor | None = None
    for name, lam, term in (("l_grp", lambdas[0], l_grp), ("l_lrp", lambdas[1], l_lrp)):
        if lam == 0:
            continue
        if term is None:
            raise ValueError(f"glrp_loss: {name} is None but its lambda is {lam}")
        total = lam * term if total is None else total + lam * term
    if total is None:
        raise ValueError(f"glrp_loss: both lambdas are zero: {tuple(lambdas)}")
    return total
