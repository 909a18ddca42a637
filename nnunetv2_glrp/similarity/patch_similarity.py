"""PSM: the SSIM-based similarity of every pair of grid x grid patches (3 x 3 in the paper) over a batch of
views (LRP).

What is compared. Patch k of view v is the input region ``boxes[k]`` of images[v] (default
``patch_grid.grid_boxes``, or ``patch_grid.receptive_field_boxes`` for a given encoder stride). Each region is
brought to the canonical orientation of its position class and resized to a common square size
(bilinear, antialiased):

- corners (class 2) are rotated by a multiple of 90 degrees to the top-left corner: the image
  corner of the patch sits at its top-left, the image centre towards its bottom-right;
- edges (class 1) are rotated to the top edge: the image border lies along the patch's top;
- centre cells (class 0, no image border) are not rotated.

Rotation alone cannot undo a flip: a flipped corner patch arrives transposed, a flipped edge patch
mirrored left-right, a centre patch in any of the 8 orientations of the square (for grids other than
3 a rotated centre cell also lands on another centre cell). So the SSIM of a
same-class pair is the maximum over the transforms that keep the canonical place fixed:
{identity, transpose} for corners, {identity, left-right mirror} for edges, all 8 for the centre.
This makes the PSM exactly invariant (up to the permutation of patch positions) when each view of
the batch is rotated and/or flipped by its own multiple of 90 degrees, as the augmentation does:
the meaning of the paper's pooling of positions into centre / edge / corner. The matrix is
symmetric (each stabiliser is a group).

Cross-class pairs (choice, the paper is silent): weight 0 by default (``cross_class="zero"``).
The classes see different anatomy (the centre holds the heart, corners mostly background), and
the paper pools positions precisely to say which patches are comparable; an SSIM weight across
classes would make background corners soft positives of the heart patch whenever their textures
happen to agree. They remain negatives in the InfoNCE denominator. ``cross_class="ssim"`` gives
them the SSIM maximised over all 8 orientations instead (orientation-free, still invariant).

SSIM -> weight: ``mapping="affine"`` (default) (1 + SSIM) / 2 in [0, 1], which keeps the order
of all SSIM values including negative ones and never gives a zero row; ``mapping="clamp"`` is
max(SSIM, 0). data_range: given, or max - min over all images of the batch (one constant).

Cost: about 0.4 x (9V)^2 SSIM evaluations (centre pairs x 8, same-class edge/corner pairs x 2,
cross-class pairs skipped); V = 24 views of 43 px patches take a few seconds on one CPU thread,
far less on a GPU. ``patch_size`` trades accuracy for speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nnunetv2_glrp.patch_grid import CENTRE, CORNER, EDGE, Box, canonical_rotation, grid_boxes, position_class

from .ssim import pairwise_ssim

MAPPINGS = ("affine", "clamp")
CROSS_CLASS = ("zero", "ssim")

Transform = Callable[[torch.Tensor], torch.Tensor]


def _d4() -> list[Transform]:
    rots = [lambda t, k=k: torch.rot90(t, k, dims=(-2, -1)) for k in range(4)]
    return rots + [lambda t, k=k: torch.rot90(t.flip(-1), k, dims=(-2, -1)) for k in range(4)]


STABILISERS: dict[int, list[Transform]] = {
    CENTRE: _d4(),
    EDGE: [lambda t: t, lambda t: t.flip(-1)],
    CORNER: [lambda t: t, lambda t: t.transpose(-2, -1)],
}


def canonical_patches(
    images: torch.Tensor, boxes: Sequence[Box], patch_size: int
) -> torch.Tensor:
    """[V, H, W] -> [V * grid^2, S, S] patches in canonical orientation, view-major, row-major
    (``boxes``: the grid^2 cells, row-major)."""
    grid = _grid_of(boxes)
    out = []
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        crop = torch.rot90(images[:, y0:y1, x0:x1], canonical_rotation(k, grid), dims=(-2, -1))
        resized = F.interpolate(
            crop[:, None], size=(patch_size, patch_size), mode="bilinear",
            align_corners=False, antialias=True,
        )
        out.append(resized[:, 0])
    return torch.stack(out, dim=1).reshape(-1, patch_size, patch_size)


def _grid_of(boxes: Sequence[Box]) -> int:
    grid = math.isqrt(len(boxes))
    if grid < 1 or grid * grid != len(boxes):
        raise ValueError(f"need grid x grid boxes, got {len(boxes)}")
    return grid


def _validate_boxes(boxes: Sequence[Box], grid: int, height: int, width: int) -> list[Box]:
    boxes = [tuple(int(v) for v in b) for b in boxes]
    if len(boxes) != grid * grid:
        raise ValueError(f"patch_ssim_matrix: need {grid * grid} boxes ({grid} x {grid} grid), got {len(boxes)}")
    for k, (y0, y1, x0, x1) in enumerate(boxes):
        if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
            raise ValueError(
                f"patch_ssim_matrix: box {k} {(y0, y1, x0, x1)} is empty or outside the "
                f"{height} x {width} image"
            )
    return boxes


def _validate_images(images: torch.Tensor) -> torch.Tensor:
    """[V, H, W] or [V, 1, H, W] finite images -> detached float32 [V, H, W]."""
    if images.ndim == 4 and images.shape[1] == 1:
        images = images[:, 0]
    if images.ndim != 3:
        raise ValueError(
            "patch_ssim_matrix: images must be [V, H, W] or [V, 1, H, W], "
            f"got {tuple(images.shape)}"
        )
    images = images.detach().float()
    if not bool(torch.isfinite(images).all()):
        raise ValueError("patch_ssim_matrix: images contain NaN or infinite values")
    return images


def _class_pair_ssim(patches: torch.Tensor, classes: torch.Tensor, cross_class: str, ssim_kw: dict) -> torch.Tensor:
    """[P, P] SSIM of the canonical patches, maximised over the pair's transforms; NaN where not compared."""
    n = patches.shape[0]
    ssim_matrix = torch.full((n, n), float("nan"), device=patches.device)
    for ca in (CENTRE, EDGE, CORNER):
        ia = torch.nonzero(classes == ca).flatten().to(patches.device)
        for cb in (CENTRE, EDGE, CORNER):
            ib = torch.nonzero(classes == cb).flatten().to(patches.device)
            if ca == cb:
                transforms = STABILISERS[ca]
            elif cross_class == "ssim":
                transforms = STABILISERS[CENTRE]  # all 8 orientations of the square
            else:
                continue
            # one call over every transform of the b side ([A, T * B]): fewer, larger kernels on a GPU
            moved = torch.cat([g(patches[ib]) for g in transforms])
            best = pairwise_ssim(patches[ia], moved, **ssim_kw).unflatten(1, (len(transforms), len(ib))).amax(dim=1)
            ssim_matrix[ia[:, None], ib[None, :]] = best.float()
    return ssim_matrix


@torch.no_grad()
def patch_ssim_matrix(
    images: torch.Tensor,
    grid: int = 3,
    boxes: Sequence[Box] | None = None,
    patch_size: int | None = None,
    mapping: str = "affine",
    cross_class: str = "zero",
    data_range: float | None = None,
    win_size: int = 11,
    sigma: float = 1.5,
) -> torch.Tensor:
    """PSM weights of all patches of all views.

    Args:
        images: [V, H, W] (or [V, 1, H, W]) input slices of the V = 2N views.
        grid: cells per side of the patch grid (3 in the paper).
        boxes: grid^2 input boxes (y0, y1, x0, x1), row-major; default ``grid_boxes(H, W, grid)``.
        patch_size: common side S of the compared patches; default the largest box side.
        mapping: ``"affine"`` (1 + SSIM) / 2 or ``"clamp"`` max(SSIM, 0).
        cross_class: ``"zero"`` or ``"ssim"`` (see the module docstring).
        data_range: SSIM data range; default max - min over all images.
        win_size, sigma: SSIM Gaussian window (11 taps, 1.5 as skimage).

    Returns:
        [g^2 V, g^2 V] float32 symmetric weights (g = grid); patch index = view * g^2 + row-major position.
    """
    if mapping not in MAPPINGS:
        raise ValueError(f"patch_ssim_matrix: mapping must be one of {MAPPINGS}, got {mapping!r}")
    if cross_class not in CROSS_CLASS:
        raise ValueError(
            f"patch_ssim_matrix: cross_class must be one of {CROSS_CLASS}, got {cross_class!r}"
        )
    images = _validate_images(images)
    height, width = images.shape[-2:]
    boxes = _validate_boxes(grid_boxes(height, width, grid) if boxes is None else boxes, grid, height, width)
    if patch_size is None:
        patch_size = max(max(y1 - y0, x1 - x0) for y0, y1, x0, x1 in boxes)
    if patch_size < win_size:
        raise ValueError(
            f"patch_ssim_matrix: patch_size {patch_size} is smaller than the SSIM window {win_size}"
        )
    if data_range is None:
        data_range = float(images.max() - images.min())
    if not data_range > 0:
        raise ValueError(
            "patch_ssim_matrix: data_range must be positive (are all images constant?)"
        )

    patches = canonical_patches(images, boxes, patch_size)
    classes = torch.tensor([position_class(k, grid) for k in range(grid * grid)]).repeat(images.shape[0])
    ssim_kw = dict(data_range=data_range, win_size=win_size, sigma=sigma)
    ssim_matrix = _class_pair_ssim(patches, classes, cross_class, ssim_kw)
    known = ~torch.isnan(ssim_matrix)
    weights = (1 + ssim_matrix) / 2 if mapping == "affine" else ssim_matrix.clamp_min(0)
    return torch.where(known, weights, torch.zeros_like(weights))
