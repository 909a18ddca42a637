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
