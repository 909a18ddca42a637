"""Loss pieces of the ``_semi`` recipe (weak-to-strong consistency after UniMatch), as pure torch functions.

Shapes: B unlabeled slices, K classes, spatial size (Y, X) (any number of spatial axes works the same).
The supervised part is nnU-Net's own loss and is not here.
"""

from __future__ import annotations

import math

import torch


def pseudo_labels(teacher_logits: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Teacher logits [B, K, Y, X] -> (pseudo-labels [B, Y, X] int64 = argmax, confidence mask [B, Y, X] bool =
    max softmax > threshold). Computed in float32; a threshold above 1 marks no pixel."""
    probabilities = torch.softmax(teacher_logits.float(), dim=1)
    confidence, labels = probabilities.max(dim=1)
    return labels, confidence > threshold


def confident_cross_entropy(student_logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Cross-entropy on the confident pixels, averaged over ALL pixels (UniMatch's normalisation: a batch with few
    confident pixels contributes little). student_logits [B, K, Y, X], labels [B, Y, X] int64, mask [B, Y, X]
    bool -> scalar. With an all-true mask it equals nnU-Net's (mean) cross-entropy; with an all-false mask it is
    exactly 0 (and so is its gradient)."""
    per_pixel = torch.nn.functional.cross_entropy(student_logits.float(), labels, reduction="none")
    return (per_pixel * mask.to(per_pixel.dtype)).sum() / per_pixel.numel()


def cutmix(values: torch.Tensor, box: torch.Tensor, partner: torch.Tensor) -> torch.Tensor:
    """CutMix between the slices of a batch: inside slice b's box take slice ``partner[b]``'s values.
    values [B, ...spatial] or [B, C, ...spatial], box [B, ...spatial] bool, partner [B] int64 -> like values.
    The same (box, partner) mixes images, pseudo-labels and confidence masks alike."""
    mixed = values[partner]
    select = box if values.ndim == box.ndim else box.unsqueeze(1)
    return torch.where(select, mixed, values)


def batch_partner(batch_size: int) -> torch.Tensor:
    """The CutMix partner of each slice: the batch rolled by one (each slice itself when the batch has one)."""
    return torch.roll(torch.arange(batch_size), 1)


def rampup_weight(iteration: int, total_iterations: int, fraction: float, weight: float) -> float:
    """``weight * exp(-5 (1 - t)^2)`` with t = iteration / (fraction * total), then ``weight`` (Laine & Aila)."""
    length = fraction * total_iterations
    if length <= 0 or iteration >= length:
        return float(weight)
    t = iteration / length
    return float(weight * math.exp(-5.0 * (1.0 - t) ** 2))


def channel_dropout(features: torch.Tensor, p: float, generator: torch.Generator | None) -> torch.Tensor:
    """Dropout2d with an explicit generator (never the global RNG): each channel of each slice is zeroed with
    probability p, the rest scaled by 1 / (1 - p). features [B, C, ...spatial] -> same shape."""
    if p <= 0:
        return features
    shape = features.shape[:2] + (1,) * (features.ndim - 2)
    keep = torch.rand(shape, generator=generator, device=features.device) >= p
    return features * keep.to(features.dtype) / (1.0 - p)


def unlabeled_loss(strong_logits: tuple[torch.Tensor, torch.Tensor], fp_logits: torch.Tensor,
                   weak_labels: torch.Tensor, weak_mask: torch.Tensor,
                   strong_targets: tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]],
                   strong_weights: tuple[float, float], fp_weight: float) -> torch.Tensor:
    """UniMatch's unlabeled loss: w1 CE(strong view 1) + w2 CE(strong view 2) + w_fp CE(feature-perturbed pass on
    the weak view), each :func:`confident_cross_entropy`. strong_logits: two [B, K, Y, X]; fp_logits [B, K, Y, X];
    weak_labels/weak_mask [B, Y, X] (targets of the fp pass); strong_targets: (labels, mask) of each strong view
    (the weak ones CutMixed with that view's box) -> scalar."""
    loss = fp_weight * confident_cross_entropy(fp_logits, weak_labels, weak_mask)
    for logits, (labels, mask), weight in zip(strong_logits, strong_targets, strong_weights):
        loss = loss + weight * confident_cross_entropy(logits, labels, mask)
    return loss
