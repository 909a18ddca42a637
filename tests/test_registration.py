"""determine-crf's rule on constructed validation cases: the CRF is registered only when it helps."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nnunetv2_glrp.postprocessing import registration
from nnunetv2_glrp.postprocessing.crf import LARGEST_COMPONENT_ONLY, NO_CRF, PAPER_SETTING, CRFSetting
from nnunetv2_glrp.postprocessing.registration import (
    ValidationCase, choose_setting, load_setting, write_registration,
)

LABELS = {"A": 1, "B": 2}


def _case(kind: str, seed: int) -> ValidationCase:
    """Two identical slices: a bright disk (label 1). ``bump``: the prediction adds a weakly confident
    bump of label 1 attached to the disk over dark background (one component, so only the CRF can
    remove it). ``line``: the reference has a 1 px line of label 2, predicted right at p = 0.6, which
    the CRF's smoothness erases for the wider intensity kernels."""
    size = 48
    yy, xx = np.mgrid[:size, :size]
    ref = (((yy - 24) ** 2 + (xx - 24) ** 2) < 12 ** 2).astype(np.uint8)
    image = np.where(ref == 1, 200.0, 50.0)
    if kind == "bump":
        pred = ref.copy()
        pred[22:26, 36:40] = 1
        confidence = np.where(pred != ref, 0.6, 0.85)
    else:
        ref[10, 4:44] = 2
        image[10, 4:44] = 120.0
        pred = ref.copy()
        confidence = np.where(ref == 2, 0.6, 0.85)
    image = image + np.random.default_rng(seed).normal(0, 5, image.shape)
    probs = np.stack([np.where(pred == c, confidence, (1 - confidence) / 2) for c in range(3)])
    return ValidationCase(f"{kind}{seed}", probs[:, None].repeat(2, 1), image[None].repeat(2, 0), (5.0, 1.5, 1.5),
                          ref[None].repeat(2, 0))


def test_a_crf_that_helps_is_registered():
    decision = choose_setting([_case("bump", 0), _case("bump", 1)], LABELS)
    chosen = CRFSetting.from_dict(decision["chosen"])
    assert chosen.use_crf
    by_name = {c["setting"]["name"]: c for c in decision["candidates"]}
    assert by_name["no CRF"]["mean_dice"] < 0.99 and by_name[chosen.name]["mean_dice"] == 1.0
    assert by_name["largest component only"]["qualifies"] is False  # the bump is attached: LCC cannot help
    assert "raised the mean validation Dice" in decision["reason"]
    assert len(decision["candidates"]) == len(registration.DEFAULT_CANDIDATES)


def test_no_crf_is_registered_where_the_crf_hurts():
    decision = choose_setting([_case("line", 0), _case("line", 1)], LABELS)
    assert decision["chosen"] == NO_CRF.to_dict()
    dices = [c["mean_dice"] for c in decision["candidates"]]
    assert dices[0] == 1.0 and min(dices) == pytest.approx(0.5)  # some CRF settings erase the line
    assert decision["reason"].startswith("no candidate raised the mean validation Dice")
    assert all(not c["qualifies"] for c in decision["candidates"])


def test_dice_paid_with_hausdorff_distance_is_refused(monkeypatch):
    """The paper's case: the CRF raises Dice and HD95 together. Scores are given, the rule is checked."""
    fake = {NO_CRF: (0.851, 11.6, 0), PAPER_SETTING: (0.876, 26.4, 0), LARGEST_COMPONENT_ONLY: (0.852, 11.6, 1),
            CRFSetting(name="good"): (0.860, 11.0, 0), CRFSetting(name="better"): (0.870, 11.6, 0)}
    monkeypatch.setattr(registration, "score", lambda cases, s, labels: dict(
        zip(("mean_dice", "mean_hd95", "n_inf_hd95"), fake[s]), dice_per_case=[]))
    decision = choose_setting(["x"], LABELS, candidates=list(fake))
    assert decision["chosen"]["name"] == "better"
    why = {c["setting"]["name"]: c["why_not"] for c in decision["candidates"]}
    assert "mean HD95 26.400 mm is above no CRF's 11.600 mm" in why["paper (always on)"]
    assert "1 infinite HD95" in why["largest component only"]
    assert why["good"] is None and why["better"] is None
    only_hd_up = {k: v for k, v in fake.items() if k.name in ("no CRF", "paper (always on)")}
    assert choose_setting(["x"], LABELS, candidates=list(only_hd_up))["chosen"] == NO_CRF.to_dict()
    with pytest.raises(ValueError, match="first candidate must be 'no CRF'"):
        choose_setting(["x"], LABELS, candidates=[PAPER_SETTING, NO_CRF])


def test_registration_file_round_trip(tmp_path):
    decision = choose_setting([_case("bump", 0)], LABELS, candidates=[NO_CRF, PAPER_SETTING])
    path = tmp_path / "crf.json"
    write_registration(path, decision, {"trainers": ["T1", "T2"], "fold": 0, "weights": None})
    data = json.loads(path.read_text())
    assert data["fold"] == 0 and data["chosen"]["name"] == "paper (always on)"
    assert load_setting(path, ["T1", "T2"]) == PAPER_SETTING
    with pytest.raises(ValueError, match=r"determined for the fusion of \['T1', 'T2'\], not of \['T1'\]"):
        load_setting(path, ["T1"])
    with pytest.raises(ValueError, match=r"determined with fusion weights None, not \[2.0, 1.0\]"):
        load_setting(path, ["T1", "T2"], weights=(2.0, 1.0))
    with pytest.raises(FileNotFoundError, match="run nnUNetv2_glrp determine-crf first"):
        load_setting(tmp_path / "missing.json")
