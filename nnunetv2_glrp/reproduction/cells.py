"""Numbers of one table: per (method, k) cell the spread over draws and the paired comparison with Random.

A draw is one (fold, seed). Dice of a case is the mean over its classes (a class absent from both
prediction and reference is left out); HD of a draw is the mean over its cases with a finite HD
(an empty prediction of a present structure has no distance: counted as ``n_inf``, as ``evaluate``
does), and the mean HD averages the classes. The comparison pairs each method's draw with
Random's draw of the same fold and seed (the same k patients and initialisation seed) on the same
test cases; cells of draws Random has not finished yet are compared on the draws both have.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Sequence

import numpy as np

from nnunetv2_glrp.reproduction import results
from nnunetv2_glrp.registry import REFERENCE
from nnunetv2_glrp.reproduction.statistics import (
    DEFAULT_BOOTSTRAP, DEFAULT_BOOTSTRAP_SEED, PairedComparison, Spread, paired_comparison, spread_over_draws,
)


@dataclass(frozen=True)
class DrawSpread:
    """Spread over draws of per-draw values that may leave out infinite cases."""

    spread: Spread | None  # over the draws with a finite value; None: no draw has one
    n_inf: int  # infinite case values left out, over all draws
    by_draw: tuple[float, ...] = ()  # every draw's value in draw order, NaN where it has no finite case

    def to_dict(self) -> dict:
        return {"spread": asdict(self.spread) if self.spread else None, "n_inf": self.n_inf}


@dataclass
class Cell:
    method: str
    k: int
    draws: list[tuple[int, int]]
    cases: list[str]
    dice: Spread  # mean over classes
    class_dice: dict[str, DrawSpread]
    class_hd: dict[str, DrawSpread]
    mean_hd: DrawSpread
    #: {reference method: the paired comparison with it} over the draws both have
    comparisons: dict[str, PairedComparison] = field(default_factory=dict)
    compared_draws: dict[str, list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def vs_reference(self) -> PairedComparison | None:
        """The comparison with the tables' reference (Random)."""
        return self.comparisons.get(REFERENCE)

    @property
    def reference_draws(self) -> list[tuple[int, int]]:
        return self.compared_draws.get(REFERENCE, [])

    def to_dict(self) -> dict:
        return {"method": self.method, "k": self.k, "draws": [list(d) for d in self.draws], "cases": self.cases,
                "dice": asdict(self.dice), "class_dice": {c: s.to_dict() for c, s in self.class_dice.items()},
                "class_hd": {c: s.to_dict() for c, s in self.class_hd.items()}, "mean_hd": self.mean_hd.to_dict(),
                "vs_reference": self.vs_reference.to_dict() if self.vs_reference else None,
                "reference_draws": [list(d) for d in self.reference_draws],
                "comparisons": {m: c.to_dict() for m, c in self.comparisons.items()}}


def _spread_of_draw_means(by_draw: Sequence[float], n_cases: int, n_inf: int) -> DrawSpread:
    values = np.asarray(by_draw, dtype=float)
    finite = values[np.isfinite(values)]
    if not finite.size:
        return DrawSpread(None, n_inf, tuple(values))
    std = float(finite.std(ddof=1)) if finite.size > 1 else None
    spread = Spread(float(finite.mean()), std, int(finite.size), n_cases, tuple(float(v) for v in finite))
    return DrawSpread(spread, n_inf, tuple(float(v) for v in values))


def finite_draw_spread(values: np.ndarray) -> DrawSpread:
    """[draws, cases] with possible inf/NaN: per draw the mean of its finite cases, then the spread over
    draws. NaN (a class absent from prediction and reference) is left out as ``evaluate`` does; infinite
    values (a structure missed) are left out and counted."""
    finite = np.isfinite(values)
    by_draw = [float(row[ok].mean()) if ok.any() else math.nan for row, ok in zip(values, finite)]
    return _spread_of_draw_means(by_draw, values.shape[1], int(np.isinf(values).sum()))


def _mean_over_classes(parts: Sequence[DrawSpread], n_cases: int) -> DrawSpread:
    """Mean HD: per draw the mean over the classes with a finite value in that draw (as evaluate's mean_hd)."""
    grid = np.asarray([p.by_draw for p in parts], dtype=float)  # [classes, draws]
    by_draw = [float(col[np.isfinite(col)].mean()) if np.isfinite(col).any() else math.nan for col in grid.T]
    return _spread_of_draw_means(by_draw, n_cases, sum(p.n_inf for p in parts))


def build_cell(cell: dict, method: str, k: int, classes: Sequence[str]) -> Cell:
    draws = sorted(cell)
    dice, cases = results.cell_array(cell, draws, "dice")
    if not np.isfinite(dice).all():
        bad = [f"fold {d[0]} seed {d[1]} case {c}" for d, row in zip(draws, dice) for c, v in zip(cases, row)
               if not math.isfinite(v)]
        raise ValueError(f"{method} k={k}: no Dice for {', '.join(bad[:5])} (every class absent from prediction "
                         "and reference)")
    class_dice = {c: finite_draw_spread(results.cell_array(cell, draws, "dice", c)[0]) for c in classes}
    class_hd = {c: finite_draw_spread(results.cell_array(cell, draws, "hd", c)[0]) for c in classes}
    return Cell(method, k, draws, cases, spread_over_draws(dice), class_dice, class_hd,
                _mean_over_classes(list(class_hd.values()), len(cases)))


def compare(cell: Cell, cell_records: dict, reference_records: dict, n_boot: int, seed: int,
            reference: str = REFERENCE) -> None:
    """Set ``cell.comparisons[reference]`` from the draws both the method and the reference have."""
    common = sorted(set(cell_records) & set(reference_records))
    if not common:
        return
    method, cases = results.cell_array(cell_records, common, "dice")
    values, ref_cases = results.cell_array(reference_records, common, "dice")
    if cases != ref_cases:
        raise ValueError(f"{cell.method} k={cell.k} and {reference} were evaluated on other test cases "
                         f"({len(cases)} vs {len(ref_cases)})")
    cell.comparisons[reference] = paired_comparison(method, values, n_boot, seed)
    cell.compared_draws[reference] = common


def table_cells(records: Sequence[results.RunRecord], methods: Sequence[str], ks: Sequence[int],
                classes: Sequence[str], n_boot: int = DEFAULT_BOOTSTRAP, bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
                references: Sequence[str] = (REFERENCE,)) -> dict[tuple[str, int], Cell]:
    """{(method, k): Cell} for every cell with at least one finished draw, each compared with every
    method of ``references`` (other than itself) that has runs at that k."""
    out = {}
    for k in ks:
        for method in methods:
            cell_records = results.select(records, method, k)
            if not cell_records:
                continue
            cell = build_cell(cell_records, method, k, classes)
            for reference in references:
                if method != reference:
                    compare(cell, cell_records, results.select(records, reference, k), n_boot, bootstrap_seed,
                            reference)
            out[(method, k)] = cell
    return out
