"""The statistics of ``reproduce`` on constructed numbers with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nnunetv2_glrp.reproduction.statistics import (
    paired_bootstrap, paired_comparison, spread_over_draws, wilcoxon_p,
)


def test_spread_is_over_draw_means_and_one_draw_has_none():
    s = spread_over_draws([[0.5, 0.7], [0.7, 0.9]])  # draw means 0.6 and 0.8
    assert s.mean == pytest.approx(0.7) and s.std == pytest.approx(math.sqrt(0.02)) and s.n_draws == 2
    assert s.per_draw == pytest.approx((0.6, 0.8)) and s.n_cases == 2
    one = spread_over_draws([[0.2, 0.4, 0.9]])
    assert one.mean == pytest.approx(0.5) and one.std is None and one.n_draws == 1


def test_a_known_paired_difference_is_inside_the_interval_which_excludes_zero():
    rng = np.random.default_rng(1)
    reference = rng.uniform(0.4, 0.9, size=(3, 30))  # 3 draws x 30 test cases
    method = reference + 0.05 + rng.normal(0, 0.01, size=reference.shape)
    cmp = paired_comparison(method, reference, n_boot=4000, seed=7)
    assert cmp.ci_low < 0.05 < cmp.ci_high and cmp.ci_low > 0
    assert cmp.mean_difference == pytest.approx((method - reference).mean())
    assert cmp.p_value < 1e-5  # 30 cases, all differences positive: exact two-sided p = 2 / 2**30
    assert cmp.n_draws == 3 and cmp.n_cases == 30 and cmp.bootstrap_seed == 7 and cmp.bootstrap_samples == 4000
    # the same in the other direction: the interval and the sign flip
    back = paired_comparison(reference, method, n_boot=4000, seed=7)
    assert back.ci_high < 0 and back.mean_difference == pytest.approx(-cmp.mean_difference)


def test_identical_methods_give_zero_and_no_test():
    values = np.random.default_rng(2).uniform(0.3, 0.9, size=(2, 12))
    cmp = paired_comparison(values, values.copy())
    assert cmp.mean_difference == 0 and cmp.ci_low == 0 and cmp.ci_high == 0
    assert cmp.p_value == 1.0 and "no test" in cmp.test
    assert "p = 1" in cmp.format() and "2 draws" in cmp.format()


def test_symmetric_differences_give_an_interval_around_zero_and_a_large_p():
    reference = np.full((2, 20), 0.7)
    signs = np.tile([1.0, -1.0], 10)
    method = reference + 0.1 * signs  # +0.1 on half the cases, -0.1 on the other half: mean 0
    cmp = paired_comparison(method, reference, n_boot=4000)
    assert cmp.ci_low < 0 < cmp.ci_high and cmp.mean_difference == pytest.approx(0, abs=1e-12)
    assert cmp.p_value > 0.9


def test_one_draw_resamples_cases_only_and_says_so():
    diffs = np.array([[0.1, 0.1, 0.1, 0.1]])
    mean, low, high = paired_bootstrap(diffs, n_boot=500)
    assert mean == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    cmp = paired_comparison(diffs + 0.5, np.full((1, 4), 0.5))
    assert cmp.n_draws == 1 and "1 draw: cases only" in cmp.format()


def test_draw_resampling_widens_the_interval_when_draws_disagree():
    """Two draws with differences +0.2 and -0.1 on every case: a case-only bootstrap would give a zero-width
    interval at each draw; resampling draws must span both."""
    diffs = np.stack([np.full(10, 0.2), np.full(10, -0.1)])
    mean, low, high = paired_bootstrap(diffs, n_boot=4000, seed=0)
    assert mean == pytest.approx(0.05) and low == pytest.approx(-0.1) and high == pytest.approx(0.2)


def test_bootstrap_is_seeded():
    diffs = np.random.default_rng(3).normal(0.02, 0.05, size=(3, 15))
    assert paired_bootstrap(diffs, seed=5) == paired_bootstrap(diffs, seed=5)
    assert paired_bootstrap(diffs, seed=5) != paired_bootstrap(diffs, seed=6)


def test_wilcoxon_drops_zero_differences_and_says_how_many():
    p, note = wilcoxon_p([0.0, 0.0, 0.1, 0.2, 0.15, 0.3, 0.12, 0.11])
    assert 0 < p < 0.05 and "2 zero differences dropped" in note and "n = 6" in note


def test_bad_inputs_are_errors():
    with pytest.raises(ValueError, match="same"):
        paired_comparison(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="non-finite"):
        spread_over_draws([[0.1, math.inf]])
    with pytest.raises(ValueError, match="draws, cases"):
        spread_over_draws([0.1, 0.2])
