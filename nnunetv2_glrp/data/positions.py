"""Slice-position labels x = n / m of preprocessed 2D slices.

nnU-Net's preprocessor transposes every case by ``plans['transpose_forward']``, crops it to the nonzero
bounding box, then resamples; a 2D configuration never resamples axis 0 (the slice axis) and its data
loader cuts slices along preprocessed axis 0. So a slice at index ``k`` of the preprocessed array is
slice ``n = k + bbox_used_for_cropping[0][0] + 1`` (1-based, from the base: the converter writes
arrays base first) of ``m = shape_before_cropping[0]`` slices. Both properties are in the transposed
axis order (the preprocessor records them after the transpose).
"""

from __future__ import annotations

from typing import Sequence


def check_slice_axis(transpose_forward: Sequence[int], configuration: str, patch_size: Sequence[int]) -> None:
    """Raise ValueError unless ``configuration`` is 2D and slices along the original slice (z) axis."""
    if len(patch_size) != 2:
        raise ValueError(f"configuration {configuration!r} has a {len(patch_size)}D patch size {tuple(patch_size)}: "
                         "GLRP pretraining needs a 2D configuration")
    if int(transpose_forward[0]) != 0:
        raise ValueError(f"plans transpose_forward={list(transpose_forward)} moves original axis "
                         f"{transpose_forward[0]} to the slice axis of configuration {configuration!r}: the 2D slices "
                         "are not short-axis slices along the original z axis, so x = n/m is undefined")


def slice_positions(properties: dict, n_preprocessed_slices: int, case: str) -> list[tuple[int, int]]:
    """(n, m) for every slice of a preprocessed case, from its ``.pkl`` properties.

    Raises ValueError naming ``case`` when the properties are missing or inconsistent with the array
    (slice axis resampled or cropped differently)."""
    try:
        bbox = properties["bbox_used_for_cropping"]
        m = int(properties["shape_before_cropping"][0])
    except (KeyError, IndexError, TypeError) as e:
        raise ValueError(f"case {case}: properties lack bbox_used_for_cropping/shape_before_cropping ({e!r})") from e
    start, stop = int(bbox[0][0]), int(bbox[0][1])
    if stop - start != n_preprocessed_slices:
        raise ValueError(f"case {case}: {n_preprocessed_slices} preprocessed slices but the crop box spans "
                         f"{stop - start} ({start}..{stop}); the slice axis must not be resampled")
    if not 0 <= start < stop <= m:
        raise ValueError(f"case {case}: crop box {start}..{stop} outside the {m} original slices")
    return [(k + start + 1, m) for k in range(n_preprocessed_slices)]
