"""Agreement of predicted and reference clinical indices (Bland-Altman statistics).

Per quantity, over the patients where both values are finite (difference = prediction - reference, in
the quantity's unit: mL, %, g):

- ``n``: number of patients;
- ``bias``: mean difference; ``sd``: sample standard deviation of the differences (n - 1 in the
  denominator, NaN when n < 2);
- ``loa_lower`` / ``loa_upper``: 95 % limits of agreement, bias -/+ 1.96 sd;
- ``mae``: mean absolute difference;
- ``pearson_r``: Pearson correlation of reference and prediction, NaN when n < 3 or when either has zero
  variance (``pearson_r_note`` says why).

Every number is a Python float (NaN when undefined), so it prints and serialises as a number.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

LOA_Z = 1.96
UNITS = {"ml": "mL", "pct": "%", "g": "g"}


def unit_of(quantity: str) -> str:
    """``"mL"`` for ``LV_EDV_ml``, ``"%"`` for ``LV_EF_pct``, ``"g"`` for ``LV_mass_g``."""
    return UNITS.get(quantity.rsplit("_", 1)[-1], "")


def agreement(reference: Sequence[float], prediction: Sequence[float]) -> dict:
    """Bland-Altman statistics of paired values (see the module docstring); non-finite pairs are left out."""
    ref = np.asarray(reference, dtype=float)
    pred = np.asarray(prediction, dtype=float)
    if ref.shape != pred.shape:
        raise ValueError(f"{ref.size} reference values but {pred.size} predictions")
    keep = np.isfinite(ref) & np.isfinite(pred)
    ref, pred = ref[keep], pred[keep]
    n = int(ref.size)
    diff = pred - ref
    bias = float(diff.mean()) if n else math.nan
    sd = float(diff.std(ddof=1)) if n >= 2 else math.nan
    out = {"n": n, "n_left_out": int((~keep).sum()), "bias": bias, "sd": sd,
           # math.nan itself when undefined: summaries with NaN still compare equal (nan is nan)
           "loa_lower": bias - LOA_Z * sd if n >= 2 else math.nan,
           "loa_upper": bias + LOA_Z * sd if n >= 2 else math.nan,
           "mae": float(np.abs(diff).mean()) if n else math.nan}
    r, note = pearson(ref, pred)
    out["pearson_r"] = r
    if note:
        out["pearson_r_note"] = note
    return out


def pearson(x: np.ndarray, y: np.ndarray) -> tuple[float, str | None]:
    """(Pearson r, None), or (NaN, the reason) when n < 3 or a variable has zero variance."""
    if x.size < 3:
        return math.nan, f"n = {x.size} < 3"
    dx, dy = x - x.mean(), y - y.mean()
    sx, sy = float(np.sqrt((dx * dx).sum())), float(np.sqrt((dy * dy).sum()))
    if sx == 0.0 or sy == 0.0:
        which = "reference" if sx == 0.0 else "prediction"
        return math.nan, f"zero variance in the {which}"
    return float((dx * dy).sum() / (sx * sy)), None


def summarise_rows(rows: Sequence[dict], quantities: Sequence[str]) -> dict[str, dict]:
    """{quantity: :func:`agreement` of its rows} for every quantity in ``quantities`` (rows of ``clinical.csv``)."""
    out = {}
    for q in quantities:
        mine = [r for r in rows if r["quantity"] == q]
        out[q] = {"unit": unit_of(q), **agreement([r["reference"] for r in mine], [r["prediction"] for r in mine])}
    return out


def format_agreement(quantity: str, stats: dict) -> str:
    """One console line: ``LV_EF_pct (n=3): bias -1.20 %, SD 0.50, LoA [-2.18, -0.22], MAE 1.20, r 0.990``."""
    unit = stats.get("unit", unit_of(quantity))
    note = f" ({stats['pearson_r_note']})" if stats.get("pearson_r_note") else ""
    return (f"{quantity} (n={stats['n']}): bias {stats['bias']:.2f} {unit}, SD {stats['sd']:.2f}, "
            f"LoA [{stats['loa_lower']:.2f}, {stats['loa_upper']:.2f}], MAE {stats['mae']:.2f}, "
            f"r {stats['pearson_r']:.3f}{note}")
