"""The per-epoch log line of the pretraining names only the loss terms the method computes."""

from __future__ import annotations

import logging
import math

from nnunetv2_glrp.pretraining import loop, make_config


def _stats(grp: float, lrp: float) -> dict:
    return {"loss": 1.25, "grp": grp, "lrp": lrp, "grp_excess": grp - 0.5, "lrp_excess": lrp - 0.25,
            "grp_collapse_excess": 0.2, "lrp_collapse_excess": 0.3, "lr": 0.1, "seconds": 2.0,
            "slices_per_s": 8.0, "loss_fn_forward_seconds": 0.1, "loss_fn_backward_seconds": 0.2,
            "loss_fn_share": 0.15, "step_seconds": 1.5, "psm_seconds": 0.05}


def _line(caplog, method: str, grp: float, lrp: float) -> str:
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=loop.logger.name):
        loop._log_epoch(4, make_config(method), _stats(grp, lrp))
    (record,) = [r for r in caplog.records if r.name == loop.logger.name]
    return record.getMessage()


def test_both_terms_are_logged_with_their_floors_and_collapse_levels(caplog):
    line = _line(caplog, "GLRP", 0.75, 0.5)
    assert "loss 1.2500 grp 0.7500 lrp 0.5000 (above the floor: grp 0.2500 lrp 0.2500; " in line
    assert "collapsed embeddings would be 0.2000 and 0.3000 above it" in line
    assert line.startswith("epoch 5/")


def test_a_term_the_method_does_not_compute_is_left_out_not_printed_as_nan(caplog):
    grp_only = _line(caplog, "GRP", 0.75, math.nan)
    assert "nan" not in grp_only and "lrp" not in grp_only
    assert "grp 0.7500 (above the floor: grp 0.2500; collapsed embeddings would be 0.2000 above it)" in grp_only
    lrp_only = _line(caplog, "LRP", math.nan, 0.5)
    assert "nan" not in lrp_only and "grp" not in lrp_only
    assert "lrp 0.5000 (above the floor: lrp 0.2500; collapsed embeddings would be 0.3000 above it)" in lrp_only
