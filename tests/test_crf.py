"""Dense CRF post-processing on synthetic slices: speckle removal, clean predictions kept, mm -> pixels."""

from __future__ import annotations

import numpy as np
import pytest

from nnunetv2_glrp.postprocessing import (
    LARGEST_COMPONENT_ONLY, NO_CRF, PAPER_SETTING, CRFSetting, crf_slice, largest_component_per_class, mm_to_pixels,
    postprocess, scale_intensities,
)

SPACING = (5.0, 1.5, 1.5)


def _disk_scene(size: int = 48, radius: int = 12, confidence: float = 0.8, seed: int = 0):
    """One slice: a bright disk (label 1) on a dark background, noisy image, clean probabilities."""
    yy, xx = np.mgrid[:size, :size]
    labels = (((yy - size // 2) ** 2 + (xx - size // 2) ** 2) < radius ** 2).astype(np.uint8)[None]
    image = np.where(labels == 1, 200.0, 50.0) + np.random.default_rng(seed).normal(0, 5, labels.shape)
    probs = np.where(labels[None] == np.arange(2)[:, None, None, None], confidence, 1 - confidence)
    return labels, image, probs


def _with_speckle(probs: np.ndarray) -> np.ndarray:
    """A 3 x 3 speckle of label 1 (p = 0.6) in the background, 2 px from the disk's clean edge."""
    out = probs.copy()
    out[:, 0, 22:25, 38:41] = np.array([0.4, 0.6])[:, None, None]
    return out


def test_crf_removes_a_speckle_next_to_a_clean_edge():
    labels, image, probs = _disk_scene()
    speckled = _with_speckle(probs)
    assert (speckled.argmax(0) != labels).sum() == 9  # the speckle is in the argmax
    assert np.array_equal(postprocess(speckled, image, SPACING, NO_CRF), speckled.argmax(0))
    assert np.array_equal(postprocess(speckled, image, SPACING, PAPER_SETTING), labels)


def test_crf_leaves_a_clean_prediction_unchanged():
    labels, image, probs = _disk_scene()
    assert np.array_equal(postprocess(probs, image, SPACING, PAPER_SETTING), labels)
    two_slices = np.concatenate([probs, probs[:, :, ::-1]], axis=1)
    image2 = np.concatenate([image, image[:, ::-1]], axis=0)
    assert np.array_equal(postprocess(two_slices, image2, SPACING, PAPER_SETTING), two_slices.argmax(0))


def test_mm_to_pixels_anisotropic():
    assert mm_to_pixels(3.0, (1.5, 0.75)) == (2.0, 4.0)
    assert mm_to_pixels(10.0, (2.5, 1.25)) == (4.0, 8.0)
    with pytest.raises(ValueError, match="two positive"):
        mm_to_pixels(3.0, (1.5, 0.0))


def test_kernel_widths_follow_the_spacing():
    """The same scene sampled twice as finely along the columns (spacing halved) gives the same marginals
    when the spacing is passed, and different ones when the coarse spacing is claimed (mm, not pixels)."""
    _, image, probs = _disk_scene()
    probs = _with_speckle(probs)[:, 0].astype(np.float32)
    setting = CRFSetting(gaussian_mm=6.0, gaussian_weight=3.0, bilateral_weight=0.0)
    fine_probs = np.ascontiguousarray(np.repeat(probs, 2, axis=2))
    fine_image = scale_intensities(np.repeat(image[0], 2, axis=1))
    coarse = crf_slice(probs, scale_intensities(image[0]), (1.5, 1.5), setting)
    right = crf_slice(fine_probs, fine_image, (1.5, 0.75), setting)[:, :, ::2]
    wrong = crf_slice(fine_probs, fine_image, (1.5, 1.5), setting)[:, :, ::2]
    err_right, err_wrong = np.abs(right - coarse).max(), np.abs(wrong - coarse).max()
    assert err_right < 0.04 and err_wrong > 2.5 * err_right


def test_scale_intensities_is_robust_to_outliers():
    image = np.linspace(0, 100, 1001)
    image[0] = -1e6
    image[-1] = 1e6
    scaled = scale_intensities(image)
    assert scaled.min() == 0.0 and scaled.max() == 1.0
    assert scaled[500] == pytest.approx(0.5, abs=1e-3)
    assert np.all(scale_intensities(np.full((4, 4), 7.0)) == 0)


def test_largest_component_per_class_in_3d():
    labels = np.zeros((3, 10, 10), dtype=np.uint8)
    labels[0:2, 1:5, 1:5] = 1    # big component of class 1, across two slices
    labels[2, 8, 8] = 1          # far island of class 1
    labels[2, 1:3, 1:3] = 1      # touches the big one diagonally through z (26-connected): kept
    labels[0, 7:9, 0:2] = 2      # class 2: one component, kept
    out = largest_component_per_class(labels)
    expected = labels.copy()
    expected[2, 8, 8] = 0
    assert np.array_equal(out, expected)
    assert np.array_equal(postprocess(np.eye(3)[labels].transpose(3, 0, 1, 2), np.zeros(labels.shape), SPACING,
                                      LARGEST_COMPONENT_ONLY), expected)


def test_setting_round_trip_and_checks():
    s = CRFSetting(name="x", bilateral_mm=10.0, largest_component=True)
    assert CRFSetting.from_dict(s.to_dict()) == s
    with pytest.raises(ValueError, match="unknown keys"):
        CRFSetting.from_dict({**s.to_dict(), "sxy": 3})
    with pytest.raises(ValueError, match="positive"):
        CRFSetting(iterations=0)
    with pytest.raises(ValueError, match="do not fit the image"):
        postprocess(np.ones((2, 1, 4, 4)) / 2, np.zeros((1, 4, 5)), SPACING, PAPER_SETTING)
