"""Bland-Altman plots of the clinical indices: one PNG per quantity family.

Families: ``volumes`` (LV and RV EDV, ESV, SV in mL), ``ef`` (LV and RV EF in %), ``mass`` (LV mass in g).
One panel per quantity of the family that has values: mean of reference and prediction (x) against
prediction - reference (y), with the bias and the 95 % limits of agreement as horizontal lines.
matplotlib (Agg backend) is imported only when a plot is drawn; files are written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Mapping, Sequence

from nnunetv2_glrp.agreement import unit_of
from nnunetv2_glrp.atomic_files import atomic_output

FAMILIES = {
    "volumes": ("LV_EDV_ml", "LV_ESV_ml", "LV_SV_ml", "RV_EDV_ml", "RV_ESV_ml", "RV_SV_ml"),
    "ef": ("LV_EF_pct", "RV_EF_pct"),
    "mass": ("LV_mass_g",),
}


def file_name(family: str) -> str:
    return f"bland_altman_{family}.png"


def plot_families(rows: Sequence[dict], stats: Mapping[str, dict], out_dir: Path) -> list[Path]:
    """Write ``bland_altman_<family>.png`` for every family with at least one finite pair; returns the files.

    ``rows``: the rows of ``clinical.csv``; ``stats``: {quantity: agreement statistics} (bias, loa_lower,
    loa_upper, as :func:`nnunetv2_glrp.agreement.agreement` returns them)."""
    written = []
    for family, quantities in FAMILIES.items():
        shown = [q for q in quantities if stats.get(q, {}).get("n", 0) > 0]
        if shown:
            written.append(_plot(family, shown, rows, stats, Path(out_dir) / file_name(family)))
    return written


def _plot(family: str, quantities: Sequence[str], rows: Sequence[dict], stats: Mapping[str, dict],
          path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(quantities)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.6 * nrows), squeeze=False)
    for ax, q in zip(axes.flat, quantities):
        pairs = [(r["reference"], r["prediction"]) for r in rows if r["quantity"] == q
                 and math.isfinite(r["reference"]) and math.isfinite(r["prediction"])]
        means = [(a + b) / 2 for a, b in pairs]
        diffs = [b - a for a, b in pairs]
        ax.scatter(means, diffs, s=16, color="C0")
        s, unit = stats[q], unit_of(q)
        ax.axhline(s["bias"], color="k", lw=1, label=f"bias {s['bias']:.2f}")
        for key in ("loa_lower", "loa_upper"):
            if math.isfinite(s[key]):
                ax.axhline(s[key], color="C3", lw=1, ls="--")
        ax.set_title(f"{q} (n={s['n']})", fontsize=9)
        ax.set_xlabel(f"mean of reference and prediction ({unit})", fontsize=8)
        ax.set_ylabel(f"prediction - reference ({unit})", fontsize=8)
        ax.legend(fontsize=7, loc="best")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
