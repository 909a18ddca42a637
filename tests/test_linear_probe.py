"""benchmarks/bench_linear_probe.py: the probes score what the features hold, on features with a known answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmark_scripts import load_benchmark


@pytest.fixture(scope="module")
def probe():
    return load_benchmark("bench_linear_probe")


def test_pixel_probe_separable_features_give_dice_one_and_noise_gives_chance(probe):
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=4000)
    onehot = np.eye(4)[labels] * 3.0
    noise = rng.normal(size=(4000, 4))
    fit, test = slice(0, 2000), slice(2000, 4000)
    good = probe.pixel_probe((onehot[fit] + 0.1 * noise[fit], labels[fit]), (onehot[test] + 0.1 * noise[test], labels[test]),
                             rng=np.random.default_rng(1), per_class=300)
    assert all(good[c] == pytest.approx(1.0) for c in probe.CLASSES)
    bad = probe.pixel_probe((noise[fit], labels[fit]), (noise[test], labels[test]), rng=np.random.default_rng(1),
                            per_class=300)
    assert bad["mean"] < 0.4  # four balanced classes: chance is 0.25


def test_pixel_table_samples_labels_at_the_feature_grid(probe):
    """Feature value = the label at each pixel of the 1/4 grid: the table pairs each feature with its label."""
    labels = np.random.default_rng(0).integers(0, 4, size=(2, 16, 16))
    grid = torch.from_numpy(labels[:, 2::4, 2::4].astype(np.float32))[:, None]  # [2, 1, 4, 4]
    x, y = probe.pixel_table([grid], labels, from_stage=0)
    np.testing.assert_array_equal(x[:, 0], y)


def test_position_probe_reads_a_linear_position_and_not_noise(probe):
    rng = np.random.default_rng(0)
    n = 120
    positions = rng.uniform(0, 1, size=2 * n)
    groups = np.repeat(np.arange(12), n // 12)

    def features(pos, informative):
        x = rng.normal(size=(len(pos), 4, 3, 3)).astype(np.float32)
        if informative:
            x[:, 0] += 5 * pos[:, None, None].astype(np.float32)  # channel 0's mean carries the position
        return [torch.from_numpy(x)]

    fit, test = positions[:n], positions[n:]
    assert probe.position_probe((features(fit, True), fit), (features(test, True), test), groups) > 0.9
    assert probe.position_probe((features(fit, False), fit), (features(test, False), test), groups) < 0.2
