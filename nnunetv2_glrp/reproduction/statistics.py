"""Honest statistics for few-label tables: spread over draws, paired differences, bootstrap, Wilcoxon.

Pure numpy/scipy on arrays; nothing here reads files. Values come as ``[draws, cases]`` arrays: a
draw is one (fold, seed) training (its k labeled patients and its initialisation), a case one test
volume; the same test cases in the same order for every draw and every method.

* :func:`spread_over_draws`: the mean over draws of each draw's mean over cases, and the standard
  deviation across draws (ddof 1). One draw has no spread: ``std`` is None and ``n_draws`` says 1.
* :func:`paired_bootstrap`: the mean paired difference (method minus reference, same draw, same
  case) and a percentile bootstrap interval that resamples draws AND cases (two levels): between two
  draws the test Dice moves by several points, which a case-only bootstrap of one draw would hide.
  With one draw only the cases are resampled. The generator is ``numpy.random.default_rng(seed)``
  and the seed is returned with the interval. benchmarks/bench_few_label.py uses it too.
* :func:`wilcoxon_p`: scipy's Wilcoxon signed-rank test (two-sided) on the per-case differences
  averaged over draws (n = the number of test cases; the draws of one case are not independent
  pairs). All differences zero: no test, p = 1 and a note saying so (scipy would divide by zero).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_BOOTSTRAP = 2000
DEFAULT_BOOTSTRAP_SEED = 0


def _as_grid(values, what: str) -> np.ndarray:
    array = np.asarray(values, dtype=float)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] < 1:
        raise ValueError(f"{what}: expected a [draws, cases] array with at least one of each, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{what}: {int((~np.isfinite(array)).sum())} non-finite values in a [draws, cases] array")
    return array


@dataclass(frozen=True)
class Spread:
    mean: float
    std: float | None  # across draws; None with one draw
    n_draws: int
    n_cases: int
    per_draw: tuple[float, ...]


def spread_over_draws(values) -> Spread:
    """Mean over draws of the per-draw means over cases, with the spread across draws."""
    array = _as_grid(values, "values")
    per_draw = array.mean(axis=1)
    std = float(per_draw.std(ddof=1)) if per_draw.size > 1 else None
    return Spread(float(per_draw.mean()), std, int(array.shape[0]), int(array.shape[1]),
                  tuple(float(v) for v in per_draw))


def paired_bootstrap(diffs, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_BOOTSTRAP_SEED,
                     level: float = 0.95) -> tuple[float, float, float]:
    """(mean difference, lower, upper) of a percentile bootstrap over draws and cases; diffs [draws, cases]."""
    array = _as_grid(diffs, "paired differences")
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    n_draws, n_cases = array.shape
    draws = rng.integers(0, n_draws, size=(n_boot, n_draws))
    cases = rng.integers(0, n_cases, size=(n_boot, n_cases))
    boots = array[draws[:, :, None], cases[:, None, :]].mean(axis=(1, 2))
    tail = 100 * (1 - level) / 2
    return float(array.mean()), float(np.percentile(boots, tail)), float(np.percentile(boots, 100 - tail))


def wilcoxon_p(per_case_diffs) -> tuple[float, str]:
    """(two-sided p, note) of the Wilcoxon signed-rank test of per-case differences against 0."""
    from scipy.stats import wilcoxon

    d = np.asarray(per_case_diffs, dtype=float).ravel()
    if d.size == 0 or not np.isfinite(d).all():
        raise ValueError(f"Wilcoxon test needs finite differences, got {d.size} values")
    nonzero = int(np.count_nonzero(d))
    if nonzero == 0:
        return 1.0, "all paired differences are 0: no test (p = 1)"
    p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
    note = f"Wilcoxon signed-rank, n = {nonzero} cases"
    if nonzero < d.size:
        note += f" ({d.size - nonzero} zero differences dropped)"
    return p, note


def difference_text(comparison: dict) -> str:
    """``+0.031 [-0.012, +0.070]``: the mean difference and interval of a :class:`PairedComparison`'s
    ``to_dict()`` (how the tables and benchmark scripts print a comparison)."""
    return f"{comparison['mean_difference']:+.3f} [{comparison['ci_low']:+.3f}, {comparison['ci_high']:+.3f}]"


@dataclass(frozen=True)
class PairedComparison:
    """A method against the reference (Random) over the same draws and test cases."""

    mean_difference: float
    ci_low: float
    ci_high: float
    level: float
    p_value: float
    test: str
    n_draws: int
    n_cases: int
    bootstrap_samples: int
    bootstrap_seed: int

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self) -> str:
        """``+0.031 [-0.012, +0.070], p = 0.04`` plus ``, 1 draw`` when the interval covers cases only."""
        p = "1" if self.p_value == 1 else (f"{self.p_value:.2g}" if self.p_value >= 1e-4 else "<1e-4")
        text = f"{difference_text(self.to_dict())}, p = {p}"
        return text + (", 1 draw: cases only" if self.n_draws == 1 else f", {self.n_draws} draws")


def paired_comparison(method, reference, n_boot: int = DEFAULT_BOOTSTRAP, seed: int = DEFAULT_BOOTSTRAP_SEED,
                      level: float = 0.95) -> PairedComparison:
    """``method`` minus ``reference``, both [draws, cases] with the same draws and cases in the same order."""
    a, b = _as_grid(method, "method values"), _as_grid(reference, "reference values")
    if a.shape != b.shape:
        raise ValueError(f"paired values must have the same [draws, cases] shape, got {a.shape} and {b.shape}")
    diffs = a - b
    mean, low, high = paired_bootstrap(diffs, n_boot, seed, level)
    p, note = wilcoxon_p(diffs.mean(axis=0))
    if math.isnan(p):  # scipy gives NaN for degenerate inputs it does not reject; say so rather than print nan
        p, note = 1.0, note + "; scipy returned no p-value"
    return PairedComparison(mean, low, high, level, p, note, int(a.shape[0]), int(a.shape[1]), n_boot, seed)
