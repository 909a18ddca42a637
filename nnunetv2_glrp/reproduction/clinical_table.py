"""The clinical indices beside Dice: a Markdown section per table and the numbers behind it.

Each run's ``evaluate`` summary (``summary["clinical"]``, :mod:`nnunetv2_glrp.agreement`) gives, over the
run's test patients, the mean absolute error and the bias (mean of prediction - reference) of every
clinical index. A cell (method, k) shows the mean over its draws with the standard deviation across draws
(as the Dice cells do): LV EF MAE and bias (%), LV EDV MAE (mL) and LV mass MAE (g). "-" is a cell not run
yet, a run recorded before ``evaluate`` had clinical indices, or an index the labels do not allow.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

from nnunetv2_glrp.registry import METHODS
from nnunetv2_glrp.reproduction.statistics import Spread

#: (quantity, statistic, column header) of the clinical columns
COLUMNS = (("LV_EF_pct", "mae", "LV EF MAE (%)"), ("LV_EF_pct", "bias", "LV EF bias (%)"),
           ("LV_EDV_ml", "mae", "LV EDV MAE (mL)"), ("LV_mass_g", "mae", "LV mass MAE (g)"))
MISSING = "-"


def clinical_value(summary: Mapping, quantity: str, stat: str) -> float | None:
    """``stat`` of ``quantity`` in an evaluate summary (a run record's "nan" strings read as NaN); None when
    the summary has no such value or it is not finite."""
    try:
        value = float(summary["clinical"]["quantities"][quantity][stat])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def clinical_n(summary: Mapping) -> int | None:
    """Number of patients with clinical indices in an evaluate summary; None when it has none recorded."""
    try:
        return int(summary["clinical"]["n_patients"])
    except (KeyError, TypeError, ValueError):
        return None


def cell_spread(summaries: Sequence[Mapping], quantity: str, stat: str) -> Spread | None:
    """Mean over the draws (one summary each) that have the value, with the standard deviation across them
    (None with one draw); None when no draw has it."""
    values = [v for v in (clinical_value(s, quantity, stat) for s in summaries) if v is not None]
    if not values:
        return None
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else None
    patients = {n for n in (clinical_n(s) for s in summaries) if n is not None}
    return Spread(float(mean), std, len(values), min(patients) if patients else 0, tuple(values))


def clinical_cells(records, methods: Sequence[str], ks: Sequence[int]) -> dict[tuple[str, int], dict]:
    """{(method, k): {column header: Spread or None}} of the cells that have records."""
    out = {}
    for method in methods:
        for k in ks:
            summaries = [r.summary for r in records if r.method == method and r.run.k == k]
            if summaries:
                out[(method, k)] = {head: cell_spread(summaries, q, stat) for q, stat, head in COLUMNS}
    return out


def _format(spread: Spread | None) -> str:
    if spread is None:
        return MISSING
    if spread.std is None:
        return f"{spread.mean:.2f} (1 draw)"
    return f"{spread.mean:.2f} ({spread.std:.2f})"


def clinical_lines(records, methods: Sequence[str], ks: Sequence[int]) -> list[str]:
    """The Markdown section: one row per method and k (``| GLRP-cl (k = 2) | ...``), the :data:`COLUMNS`."""
    cells = clinical_cells(records, methods, ks)
    heads = [head for _, _, head in COLUMNS]
    lines = ["### Clinical indices (prediction - reference per test patient)", "",
             "| method (k) | " + " | ".join(heads) + " |", "|---|" + "---|" * len(heads)]
    for method in methods:
        for k in ks:
            cell = cells.get((method, k))
            row = [_format(cell[h]) if cell else MISSING for h in heads]
            # "| label (k = K) |", not "| label | K |": the rows above, "| label | ...", stay the only ones
            lines.append(f"| {METHODS[method].label} (k = {k}) | " + " | ".join(row) + " |")
    lines += ["", "Per run, over the test patients with an ED and an ES case (evaluate's clinical.csv): MAE = mean "
              "absolute difference, bias = mean difference (prediction - reference); per cell the mean over draws "
              "(standard deviation across draws). EF = 100 x (EDV - ESV) / EDV; LV mass = myocardium volume at "
              "ED x 1.05 g/mL. '-' = not run yet, recorded without clinical indices, or not allowed by the labels."]
    return lines


def cells_to_json(cells: Mapping[tuple[str, int], Mapping]) -> list[dict]:
    """The numbers behind :func:`clinical_lines` for ``table<N>.json``."""
    return [{"method": method, "k": k,
             **{head: (None if s is None else {"mean": s.mean, "std": s.std, "n_draws": s.n_draws,
                                               "n_patients": s.n_cases, "per_draw": list(s.per_draw)})
                for head, s in values.items()}}
            for (method, k), values in cells.items()]
