"""Patch grid, receptive-field boxes, SSIM against skimage, and the PSM's invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.metrics import structural_similarity

from nnunetv2_glrp.models.heads import pool_patch_statistics

from nnunetv2_glrp.patch_grid import (
    canonical_rotation,
    feature_map_size,
    feature_patch_boxes,
    grid_boxes,
    patch_view_index,
    position_class,
    receptive_field_boxes,
)
from nnunetv2_glrp.similarity import canonical_patches, pairwise_ssim, patch_ssim_matrix

torch.set_num_threads(1)


def _assert_tiles(boxes, h, w):
    cover = np.zeros((h, w), dtype=int)
    for y0, y1, x0, x1 in boxes:
        assert y0 < y1 and x0 < x1
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all(), "boxes must tile the image exactly once"
    ys = sorted({(b[0], b[1]) for b in boxes})
    xs = sorted({(b[2], b[3]) for b in boxes})
    assert [b[:2] for b in boxes] == [ys[r] for r in range(3) for _ in range(3)]  # row-major
    assert [b[2:] for b in boxes] == [xs[c] for _ in range(3) for c in range(3)]


def _smooth_images(v, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    return F.avg_pool2d(torch.randn(v, 1, h, w, generator=g), 5, 1, 2)[:, 0]


# ---------------------------------------------------------------- boxes and classes


@pytest.mark.parametrize("h, w", [(128, 128), (288, 288), (127, 131), (289, 50), (3, 3)])
def test_grid_boxes_tile_evenly_and_symmetrically(h, w):
    boxes = grid_boxes(h, w)
    _assert_tiles(boxes, h, w)
    heights = [boxes[3 * r][1] - boxes[3 * r][0] for r in range(3)]
    widths = [boxes[c][3] - boxes[c][2] for c in range(3)]
    assert max(heights) - min(heights) <= 1 and max(widths) - min(widths) <= 1
    assert heights == heights[::-1] and widths == widths[::-1]  # mirror-symmetric split


def test_grid_boxes_known_values():
    assert grid_boxes(128, 128)[:3] == [(0, 43, 0, 43), (0, 43, 43, 85), (0, 43, 85, 128)]
    assert grid_boxes(288, 288)[4] == (96, 192, 96, 192)
    with pytest.raises(ValueError, match="height of size 2"):
        grid_boxes(2, 10)


@pytest.mark.parametrize("hw", [(128, 128), (288, 288), (127, 131), (289, 97)])
@pytest.mark.parametrize("stride", [1, 2, 4, 16, 32, (2, 4)])
def test_receptive_field_boxes(hw, stride):
    h, w = hw
    sy, sx = (stride, stride) if isinstance(stride, int) else stride
    fh, fw = feature_map_size(hw, stride)
    assert (fh, fw) == (-(-h // sy), -(-w // sx))
    boxes = receptive_field_boxes(hw, stride)
    _assert_tiles(boxes, h, w)
    for (y0, y1, x0, x1), (fy0, fy1, fx0, fx1) in zip(boxes, feature_patch_boxes((fh, fw))):
        assert (y0, y1, x0, x1) == (fy0 * sy, min(fy1 * sy, h), fx0 * sx, min(fx1 * sx, w))
    if stride == 1:
        assert boxes == grid_boxes(h, w)


def test_receptive_field_boxes_known_values():
    rows = lambda boxes: [b[:2] for b in boxes[::3]]  # noqa: E731
    assert rows(receptive_field_boxes((128, 128), 32)) == [(0, 32), (32, 96), (96, 128)]
    assert rows(receptive_field_boxes((127, 127), 16)) == [(0, 48), (48, 80), (80, 127)]
    assert receptive_field_boxes((288, 288), 32) == grid_boxes(288, 288)
    with pytest.raises(ValueError, match="feature map height of size 2"):
        receptive_field_boxes((128, 128), 64)


def test_feature_patch_boxes_sizes_differ_by_at_most_one():
    for h in range(3, 40):
        sizes = [b[1] - b[0] for b in feature_patch_boxes((h, h))[::3]]
        assert sum(sizes) == h and max(sizes) - min(sizes) <= 1


def test_position_classes_and_canonical_rotation():
    assert [position_class(k) for k in range(9)] == [2, 1, 2, 1, 0, 1, 2, 1, 2]
    # torch.rot90(k=1) turns counter-clockwise: top-right -> top-left, right edge -> top edge
    assert [canonical_rotation(k) for k in range(9)] == [0, 0, 1, 3, 0, 1, 3, 2, 2]
    with pytest.raises(ValueError):
        position_class(9)


def test_canonical_corners_have_the_image_corner_at_top_left():
    yy, xx = torch.meshgrid(torch.arange(48.0), torch.arange(48.0), indexing="ij")
    dist = torch.sqrt((yy - 23.5) ** 2 + (xx - 23.5) ** 2)  # grows towards the image corners
    patches = canonical_patches(dist[None], grid_boxes(48, 48), 16)
    for k in (0, 2, 6, 8):
        assert int(patches[k].argmax()) == 0  # top-left pixel
    for k in (1, 3, 5, 7):  # edges: the image border lies along the patch's top row
        assert int(patches[k].mean(dim=1).argmax()) == 0


def test_patch_pooling_order():
    feats = torch.arange(2 * 3 * 5 * 4, dtype=torch.float32).reshape(2, 3, 5, 4)
    pooled = pool_patch_statistics(feats, pooling="mean")  # the local head's cell pooling
    assert pooled.shape == (18, 3)
    boxes = feature_patch_boxes((5, 4))
    for v in range(2):
        for k, (y0, y1, x0, x1) in enumerate(boxes):
            assert torch.allclose(pooled[v * 9 + k], feats[v, :, y0:y1, x0:x1].mean(dim=(1, 2)))
    assert patch_view_index(2).tolist() == [0] * 9 + [1] * 9


@pytest.mark.parametrize("grid", [2, 4, 5])
def test_grids_other_than_3_geometry(grid):
    h, w = 60, 40  # divisible by 2, 4, 5: every split is mirror-symmetric
    boxes = grid_boxes(h, w, grid)
    assert len(boxes) == grid * grid
    cover = np.zeros((h, w), dtype=int)
    for y0, y1, x0, x1 in boxes:
        assert (y1 - y0, x1 - x0) == (h // grid, w // grid)
        cover[y0:y1, x0:x1] += 1
    assert (cover == 1).all()
    assert boxes[1] == (0, h // grid, w // grid, 2 * w // grid)  # row-major
    classes = [position_class(k, grid) for k in range(grid * grid)]
    n_inner = (grid - 2) ** 2 if grid > 2 else 0
    assert (classes.count(2), classes.count(1), classes.count(0)) == (4, grid * grid - 4 - n_inner, n_inner)
    assert [classes[r * grid + c] for r in (0, grid - 1) for c in (0, grid - 1)] == [2, 2, 2, 2]
    # canonical orientation: corners put the image corner at the top-left, edges the border along the top
    yy, xx = torch.meshgrid(torch.arange(float(h)), torch.arange(float(w)), indexing="ij")
    dist = torch.sqrt((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2)
    patches = canonical_patches(dist[None], boxes, 16)
    assert patches.shape == (grid * grid, 16, 16)
    for k, cls in enumerate(classes):
        if cls == 2:
            assert int(patches[k].argmax()) == 0
        elif cls == 1:
            assert int(patches[k].mean(dim=1).argmax()) == 0
    feats = torch.randn(2, 3, 2 * grid, 2 * grid)
    pooled = pool_patch_statistics(feats, grid, pooling="mean")
    assert pooled.shape == (2 * grid * grid, 3)
    assert torch.allclose(pooled[grid * grid + 1], feats[1, :, 0:2, 2:4].mean(dim=(1, 2)))
    assert patch_view_index(2, grid).tolist() == [0] * grid * grid + [1] * grid * grid


# ---------------------------------------------------------------- SSIM


def _structured(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    img = 0.5 * np.sin(xx / 4.0) + ((yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (h / 3) ** 2)
    return img.astype(np.float64)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_ssim_equals_skimage(dtype):
    rng = np.random.default_rng(0)
    pairs = [
        (rng.random((33, 41)), rng.random((33, 41))),
        (_structured(40, 37), _structured(40, 37) + 0.2 * rng.standard_normal((40, 37))),
        (_structured(24, 24), np.rot90(_structured(24, 24)).copy()),
    ]
    for a, b in pairs:
        rng_ = float(max(a.max(), b.max()) - min(a.min(), b.min()))
        for data_range in (2.0, rng_):
            ref = structural_similarity(
                a, b, data_range=data_range, gaussian_weights=True, sigma=1.5,
                use_sample_covariance=False,
            )
            ta, tb = torch.tensor(a, dtype=dtype)[None], torch.tensor(b, dtype=dtype)[None]
            assert float(pairwise_ssim(ta, tb, data_range)[0, 0]) == pytest.approx(ref, abs=1e-4)
        assert float(pairwise_ssim(ta, tb)[0, 0]) == pytest.approx(ref, abs=1e-4)  # data_range = max - min


def test_pairwise_ssim_matches_skimage_pair_by_pair_and_chunks():
    x = _smooth_images(5, 20, 22, 1)
    y = _smooth_images(4, 20, 22, 2)
    full = pairwise_ssim(x, y, data_range=1.0)
    chunked = pairwise_ssim(x, y, data_range=1.0, max_chunk_elements=1)
    assert full.shape == (5, 4) and torch.allclose(full, chunked)
    for i in range(5):
        for j in range(4):
            ref = structural_similarity(x[i].double().numpy(), y[j].double().numpy(), data_range=1.0,
                                        gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
            assert float(full[i, j]) == pytest.approx(ref, abs=1e-4), (i, j)
    assert torch.allclose(pairwise_ssim(x, x, 1.0).diagonal(), torch.ones(5), atol=1e-6)
    with pytest.raises(ValueError, match="at least 11 x 11"):
        pairwise_ssim(torch.rand(2, 8, 8), torch.rand(2, 8, 8))
    with pytest.raises(ValueError, match="data_range"):
        pairwise_ssim(torch.ones(2, 12, 12), torch.ones(2, 12, 12))


def test_pairwise_ssim_filter_cache_is_keyed_by_size_window_and_dtype():
    """The band matrices are cached: a second call with another size, window or dtype must not reuse the first's."""
    x = _smooth_images(3, 20, 22, 3)
    y = _smooth_images(2, 20, 22, 4)
    pairwise_ssim(x, y, data_range=1.0)  # fills the cache for 20 x 22, 11 taps, sigma 1.5, float32
    cases = [(x, y, 9, 1.0, torch.float32),  # skimage's window for sigma 1.0: 2 * int(3.5 + 0.5) + 1 = 9
             (x[:, :18, :21], y[:, :18, :21], 11, 1.5, torch.float32),
             (x, y, 11, 1.5, torch.float64)]
    for a, b, win, sigma, dtype in cases:
        got = pairwise_ssim(a.to(dtype), b.to(dtype), data_range=1.0, win_size=win, sigma=sigma)
        assert got.dtype == dtype
        for i in range(a.shape[0]):
            for j in range(b.shape[0]):
                ref = structural_similarity(a[i].double().numpy(), b[j].double().numpy(), data_range=1.0,
                                            gaussian_weights=True, sigma=sigma, use_sample_covariance=False)
                assert float(got[i, j]) == pytest.approx(ref, abs=1e-4), (win, sigma, dtype, i, j)


# ---------------------------------------------------------------- PSM


def _position_permutation(transform):
    perm = []
    for k in range(9):
        marker = torch.zeros(3, 3)
        marker.view(-1)[k] = 1
        perm.append(int(transform(marker).flatten().argmax()))
    return perm


TRANSFORMS = {
    "rot90": lambda t: torch.rot90(t, 1, dims=(-2, -1)),
    "rot180": lambda t: torch.rot90(t, 2, dims=(-2, -1)),
    "flip_lr": lambda t: t.flip(-1),
    "flip_ud": lambda t: t.flip(-2),
    "transpose": lambda t: t.transpose(-2, -1),
}


@pytest.mark.parametrize("cross_class", ["zero", "ssim"])
@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_psm_invariant_under_rotating_or_flipping_all_views(name, cross_class):
    images = _smooth_images(3, 56, 53, 3)
    transform = TRANSFORMS[name]
    psm = patch_ssim_matrix(images, cross_class=cross_class)
    moved = patch_ssim_matrix(transform(images), cross_class=cross_class)
    pos = _position_permutation(transform)
    perm = torch.tensor([v * 9 + pos[k] for v in range(3) for k in range(9)])
    assert torch.allclose(moved[perm][:, perm], psm, atol=1e-5)


@pytest.mark.parametrize("cross_class", ["zero", "ssim"])
def test_psm_invariant_under_a_different_transform_per_view(cross_class):
    images = _smooth_images(4, 50, 50, 7)
    names = ["rot90", "flip_lr", "transpose", "rot180"]
    moved = torch.stack([TRANSFORMS[n](images[v]) for v, n in enumerate(names)])
    psm = patch_ssim_matrix(images, cross_class=cross_class)
    psm_moved = patch_ssim_matrix(moved, cross_class=cross_class)
    moves = [_position_permutation(TRANSFORMS[n]) for n in names]
    perm = torch.tensor([v * 9 + moves[v][k] for v in range(4) for k in range(9)])
    assert torch.allclose(psm_moved[perm][:, perm], psm, atol=1e-5)


@pytest.mark.parametrize("name", list(TRANSFORMS))
def test_patch_matches_its_counterpart_in_the_transformed_view(name):
    image = _smooth_images(1, 48, 48, 4)
    transform = TRANSFORMS[name]
    psm = patch_ssim_matrix(torch.cat([image, transform(image)]))
    pos = _position_permutation(transform)
    for k in range(9):
        assert float(psm[k, 9 + pos[k]]) == pytest.approx(1.0, abs=1e-5)
    # and a different patch of the same class does not
    assert float(psm[0, 9 + pos[8]]) < 0.9


def test_psm_structure_and_values():
    images = _smooth_images(2, 48, 48, 5)
    psm = patch_ssim_matrix(images)
    classes = torch.tensor([position_class(k) for k in range(9)]).repeat(2)
    assert psm.shape == (18, 18) and psm.dtype == torch.float32
    assert torch.allclose(psm, psm.T) and torch.allclose(psm.diagonal(), torch.ones(18))
    cross = classes[:, None] != classes[None, :]
    assert (psm[cross] == 0).all() and (psm[~cross] > 0).all() and (psm <= 1 + 1e-6).all()
    # one corner pair by hand with skimage: corner 0 of view 0 (no rotation) vs corner 2 of
    # view 1 (rotated by 90 degrees), maximised over {identity, transpose}
    rng = float(images.max() - images.min())
    a = images[0, :16, :16].double().numpy()
    b = torch.rot90(images[1, :16, 32:], 1, dims=(0, 1)).double().numpy()
    kw = dict(data_range=rng, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    best = max(structural_similarity(a, b, **kw), structural_similarity(a, b.T.copy(), **kw))
    assert float(psm[0, 11]) == pytest.approx((1 + best) / 2, abs=1e-4)
    clamp = patch_ssim_matrix(images, mapping="clamp")
    assert torch.allclose(clamp[~cross], (2 * psm[~cross] - 1).clamp_min(0), atol=1e-5)


def test_psm_with_receptive_field_boxes_and_channel_axis():
    """Two views identical exactly in box 0 of the uneven boxes (16, 32, 16 px) and independent elsewhere: PSM 1
    for that pair of patches only. With the default even boxes (21, 22, 21 px) box 0 would reach into rows and
    columns where the views differ, so ignoring ``boxes`` fails this test."""
    images = _smooth_images(2, 64, 64, 6)
    boxes = receptive_field_boxes((64, 64), 16)
    assert [b[:2] for b in boxes[::3]] == [(0, 16), (16, 48), (48, 64)]
    images[1, :16, :16] = images[0, :16, :16]
    psm = patch_ssim_matrix(images[:, None], boxes=boxes, patch_size=24)
    assert psm.shape == (18, 18)
    assert float(psm[0, 9]) == pytest.approx(1.0, abs=1e-6)
    assert all(float(psm[k, 9 + k]) < 0.9 for k in range(1, 9))
    assert float(patch_ssim_matrix(images, patch_size=24)[0, 9]) < 0.95  # the even grid's cell 0 differs


def _grid_permutation(transform, grid):
    perm = []
    for k in range(grid * grid):
        marker = torch.zeros(grid, grid)
        marker.view(-1)[k] = 1
        perm.append(int(transform(marker).flatten().argmax()))
    return perm


@pytest.mark.parametrize("grid", [2, 4])
def test_psm_of_other_grids_is_invariant_and_class_structured(grid):
    images = _smooth_images(4, 48, 48, 11)
    names = ["rot90", "flip_lr", "transpose", "rot180"]
    moved = torch.stack([TRANSFORMS[n](images[v]) for v, n in enumerate(names)])
    g2 = grid * grid
    psm = patch_ssim_matrix(images, grid=grid, patch_size=12)
    psm_moved = patch_ssim_matrix(moved, grid=grid, patch_size=12)
    assert psm.shape == (4 * g2, 4 * g2)
    moves = [_grid_permutation(TRANSFORMS[n], grid) for n in names]
    perm = torch.tensor([v * g2 + moves[v][k] for v in range(4) for k in range(g2)])
    assert torch.allclose(psm_moved[perm][:, perm], psm, atol=1e-5)
    classes = torch.tensor([position_class(k, grid) for k in range(g2)]).repeat(4)
    cross = classes[:, None] != classes[None, :]
    assert (psm[cross] == 0).all() and (psm[~cross] > 0).all()
    # each patch of view 0 matches its counterpart in the transformed copy exactly
    pair = patch_ssim_matrix(torch.stack([images[0], TRANSFORMS["rot90"](images[0])]), grid=grid, patch_size=12)
    pos = _grid_permutation(TRANSFORMS["rot90"], grid)
    assert torch.allclose(pair[torch.arange(g2), g2 + torch.tensor(pos)], torch.ones(g2), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, images, match",
    [
        ({"grid": 4, "boxes": grid_boxes(48, 48)}, torch.rand(2, 48, 48), r"need 16 boxes \(4 x 4 grid\)"),
        ({"mapping": "abs"}, torch.rand(2, 48, 48), "mapping"),
        ({"cross_class": "one"}, torch.rand(2, 48, 48), "cross_class"),
        ({}, torch.ones(2, 48, 48), "data_range"),
        ({}, torch.rand(2, 3, 48, 48), r"\[V, H, W\]"),
        ({"boxes": [(0, 60, 0, 10)] * 9}, torch.rand(2, 48, 48), "outside"),
        ({"patch_size": 8}, torch.rand(2, 48, 48), "smaller than the SSIM window"),
    ],
)
def test_psm_rejects_bad_input(kwargs, images, match):
    with pytest.raises(ValueError, match=match):
        patch_ssim_matrix(images, **kwargs)


# ---------------------------------------------------------------- the batched float32 PSM (on any device)


def _slow_psm64(images: torch.Tensor, grid: int, patch_size: int, data_range: float) -> torch.Tensor:
    """Float64 reference, pair by pair: same-class pairs get (1 + max over the class's stabiliser of SSIM) / 2."""
    from nnunetv2_glrp.similarity.patch_similarity import STABILISERS

    h, w = images.shape[-2:]
    patches = canonical_patches(images.double(), grid_boxes(h, w, grid), patch_size)
    classes = [position_class(k, grid) for k in range(grid * grid)] * images.shape[0]
    n = patches.shape[0]
    out = torch.zeros(n, n, dtype=torch.float64)
    for i in range(n):
        for j in range(n):
            if classes[i] == classes[j]:
                best = max(float(pairwise_ssim(patches[i:i + 1], g(patches[j:j + 1]), data_range)[0, 0])
                           for g in STABILISERS[classes[i]])
                out[i, j] = (1 + best) / 2
    return out


def _structured_images(v, h, w, seed):
    """Piecewise-constant discs and a bright frame on a dark background: flat regions, sharp edges."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    out = torch.zeros(v, h, w)
    for k in range(v):
        cy, cx, r = (torch.rand(3, generator=g) * torch.tensor([h, w, min(h, w) / 3])).tolist()
        out[k][(yy - cy) ** 2 + (xx - cx) ** 2 < (r + 3) ** 2] = 1.0
        out[k, : 2 + k] = 0.5
    return out


@pytest.mark.parametrize("kind", ["random", "smooth", "structured"])
def test_batched_float32_psm_equals_the_float64_pair_by_pair_reference(kind):
    """patch_ssim_matrix (all pairs of the batch in one call, float32: what the step runs on the training device)
    equals the float64 PSM computed one pair at a time to 1e-5."""
    v, h, w = 4, 48, 42
    images = {"random": lambda: torch.rand(v, h, w, generator=torch.Generator().manual_seed(3)),
              "smooth": lambda: _smooth_images(v, h, w, 4),
              "structured": lambda: _structured_images(v, h, w, 5)}[kind]()
    data_range = float(images.max() - images.min())
    fast = patch_ssim_matrix(images.float(), patch_size=16, data_range=data_range)
    assert fast.dtype == torch.float32
    ref = _slow_psm64(images, 3, 16, data_range)
    torch.testing.assert_close(fast.double(), ref, rtol=0, atol=1e-5)
