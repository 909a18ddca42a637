import math

import numpy as np
import pytest

from nnunetv2_glrp.metrics import class_metrics, dice, evaluate_labels


def test_dice_known_values():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2] = True  # 8 voxels
    b[1:3] = True  # 8 voxels, 4 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert math.isnan(dice(np.zeros(3, bool), np.zeros(3, bool)))
    assert dice(a, np.zeros_like(a)) == 0.0


def test_hausdorff_of_shifted_square_respects_spacing():
    a = np.zeros((1, 20, 20), bool)
    a[0, 5:10, 5:10] = True
    b = np.roll(a, 3, axis=2)  # shift 3 voxels along x
    m = class_metrics(a, b, spacing=(10.0, 1.0, 2.0))
    assert m.hd == pytest.approx(6.0)  # 3 voxels x 2 mm
    assert m.hd95 <= m.hd
    assert 0 < m.assd < m.hd
    same = class_metrics(a, a, spacing=(10.0, 1.0, 2.0))
    assert same.hd == 0.0 and same.assd == 0.0 and same.dice == 1.0


def test_empty_masks_and_shape_errors():
    a = np.zeros((5, 5), bool)
    b = a.copy()
    b[2, 2] = True
    assert math.isinf(class_metrics(a, b, (1.0, 1.0)).hd)
    assert math.isnan(class_metrics(a, a, (1.0, 1.0)).hd)
    with pytest.raises(ValueError, match="shape"):
        dice(a, np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="spacing"):
        class_metrics(b, b, (1.0,))


def test_evaluate_labels_per_class():
    ref = np.zeros((1, 10, 10), np.uint8)
    ref[0, 2:5, 2:5] = 1
    ref[0, 6:9, 6:9] = 3
    pred = ref.copy()
    pred[0, 6:9, 6:9] = 0
    out = evaluate_labels(pred, ref, (1.0, 1.0, 1.0), {"RV": 1, "LV": 3})
    assert out["RV"].dice == 1.0
    assert out["LV"].dice == 0.0


def test_hd95_and_assd_of_shifted_squares_known_values():
    """Two 5 x 5 squares 3 voxels apart along x, spacing (1 mm, 2 mm). Surface = the 16-voxel ring of each.
    Ring of a -> ring of b (mm): top and bottom rows 6, 4, 2, 0, 0 each; left column (3 inner rows) 6 each;
    right column 1, 2, 1 (b's top and bottom rows are 1 mm above and below its ends, its left column 2 mm to
    the right); b -> a is the mirror image. HD = 6; ASSD = (5*6 + 2*4 + 3*2 + 2*1) / 16 = 2.875;
    HD95 = 6 (numpy's linear 95th percentile of 16 values lies between the two largest, both 6)."""
    a = np.zeros((20, 20), bool)
    a[5:10, 5:10] = True
    b = np.roll(a, 3, axis=1)
    m = class_metrics(a, b, spacing=(1.0, 2.0))
    assert (m.hd, m.hd95, m.assd) == (pytest.approx(6.0), pytest.approx(6.0), pytest.approx(2.875))
    assert m.dice == pytest.approx(2 * 10 / 50)
    swapped = class_metrics(a, b, spacing=(2.0, 1.0))  # the shift now runs along the 1 mm axis
    assert (swapped.hd, swapped.assd) == (pytest.approx(3.0), pytest.approx(1.5))


def test_hd95_discounts_one_outlier_voxel_and_assd_averages_both_directions():
    """pred = the reference square plus one stray voxel 9 voxels (18 mm) right of its edge. Directed distances:
    ref -> pred all 0 (16 ring voxels); pred -> ref 16 zeros and one 18. HD = 18; HD95 = the larger directed
    95th percentile, numpy's linear one of (0 x 16, 18): 0.2 * 18 = 3.6; ASSD = 18 / 33."""
    ref = np.zeros((20, 20), bool)
    ref[5:10, 5:10] = True
    pred = ref.copy()
    pred[5, 18] = True
    m = class_metrics(pred, ref, spacing=(1.0, 2.0))
    assert m.hd == pytest.approx(18.0)
    assert m.hd95 == pytest.approx(3.6)
    assert m.assd == pytest.approx(18.0 / 33)
