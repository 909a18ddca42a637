"""The grid x grid patch grid of LRP (3 x 3 in the paper): feature-map patches, their input boxes, and
position classes. Shared by the projection heads (``models.heads``, which pool the feature patches) and the
PSM (``similarity.patch_similarity``, which compares the input boxes), so both cut the same cells.

Split rule (chosen; the paper is silent): a length L is cut into ``grid`` parts at
``floor(k * L / grid + 1/2)``, k = 0..grid, so part sizes differ by at most 1. For an odd grid
(3 included) the split is mirror-symmetric (k L / grid never ends in .5), so rotating or flipping an
image by a multiple of 90 degrees maps grid cells exactly onto grid cells (e.g. 128 -> 43, 42, 43);
for an even grid only when grid divides L.

Position classes, for any grid: centre (no image border: the interior cells), edge (one border),
corner (two borders); for grid = 3 one centre, four edges, four corners, for grid = 2 four corners.

Patch order everywhere in this package: row-major within a view (index = grid * row + col) and
view-major across views (patch index = view * grid**2 + index).

Input region of a feature patch: the strided projection of its feature cells, i.e. feature rows
[r0, r1) -> input rows [r0 * stride, r1 * stride), clipped to the image. (The theoretical receptive
field of a deep stage covers the whole slice and would make every PSM equal; docs/method.md section 5.)
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

Box = tuple[int, int, int, int]  # (y0, y1, x0, x1), half-open

CENTRE, EDGE, CORNER = 0, 1, 2


def _split(length: int, grid: int, what: str) -> list[int]:
    if grid < 1:
        raise ValueError(f"grid must be >= 1, got {grid}")
    if length < grid:
        raise ValueError(f"{what} of size {length} cannot be split into {grid} non-empty parts")
    return [math.floor(k * length / grid + 0.5) for k in range(grid + 1)]


def _boxes(height: int, width: int, grid: int, what: str) -> list[Box]:
    ys = _split(int(height), grid, f"{what} height")
    xs = _split(int(width), grid, f"{what} width")
    return [(ys[r], ys[r + 1], xs[c], xs[c + 1]) for r in range(grid) for c in range(grid)]


def grid_boxes(height: int, width: int, grid: int = 3) -> list[Box]:
    """The grid x grid cells (y0, y1, x0, x1) over an input slice of height x width, row-major."""
    return _boxes(height, width, grid, "input")


def feature_patch_boxes(feature_hw: Sequence[int], grid: int = 3) -> list[Box]:
    """Which feature-map cells form each of the grid x grid patches of an h x w feature map."""
    h, w = (int(v) for v in feature_hw)
    return _boxes(h, w, grid, "feature map")


def _pair(stride: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(stride, int):
        sy = sx = stride
    else:
        sy, sx = (int(v) for v in stride)
    if sy < 1 or sx < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    return sy, sx


def feature_map_size(input_hw: Sequence[int], stride: int | Sequence[int]) -> tuple[int, int]:
    """Feature-map size after nnU-Net's strided 3x3 convolutions (padding 1): ceil(L / stride)."""
    sy, sx = _pair(stride)
    h, w = (int(v) for v in input_hw)
    return math.ceil(h / sy), math.ceil(w / sx)


def receptive_field_boxes(
    input_hw: Sequence[int], stride: int | Sequence[int], grid: int = 3
) -> list[Box]:
    """Input boxes of the grid x grid feature patches at cumulative ``stride`` (int or (sy, sx)).

    The feature map has ceil(H / sy) x ceil(W / sx) cells; each patch's cells are projected back
    with the stride and clipped to the image. With stride 1 this equals :func:`grid_boxes`.
    """
    sy, sx = _pair(stride)
    h, w = (int(v) for v in input_hw)
    fh, fw = feature_map_size((h, w), (sy, sx))
    return [
        (y0 * sy, min(y1 * sy, h), x0 * sx, min(x1 * sx, w))
        for y0, y1, x0, x1 in feature_patch_boxes((fh, fw), grid)
    ]


def position_class(index: int, grid: int = 3) -> int:
    """0 centre (no border), 1 edge (one border), 2 corner (two borders) for a row-major index."""
    if not 0 <= index < grid * grid:
        raise ValueError(f"patch index must lie in [0, {grid * grid}), got {index}")
    r, c = divmod(index, grid)
    return int(r in (0, grid - 1)) + int(c in (0, grid - 1))


def canonical_rotation(index: int, grid: int = 3) -> int:
    """k such that ``torch.rot90(patch, k, dims=(-2, -1))`` brings a patch to its class's
    canonical place: corners to the top-left corner, edges to the top edge (so the image border
    lies at the patch's top, and for corners also at its left), centre cells stay (k = 0).

    Found by rotating a marker grid, so it follows torch.rot90's convention by construction.
    """
    cls = position_class(index, grid)
    if cls == CENTRE:
        return 0
    marker = torch.zeros(grid, grid)
    marker.view(-1)[index] = 1.0
    for k in range(4):
        turned = torch.rot90(marker, k, dims=(0, 1))
        if (turned[0, 0] if cls == CORNER else turned[0, 1:grid - 1].sum()) == 1.0:
            return k
    raise ValueError(f"patch {index} of a {grid}x{grid} grid has no canonical rotation")


def patch_view_index(num_views: int, grid: int = 3) -> torch.Tensor:
    """[num_views * grid**2] view index of each patch in the view-major patch order."""
    return torch.arange(num_views).repeat_interleave(grid * grid)
