"""Markdown tables in the paper's layouts, our numbers beside the paper's ACDC ones.

``dice_by_k`` (Table 1): one row pair per method (ours, paper), one column per k; a cell is
"mean (std across draws)" of the mean Dice, and "(1 draw)" when there is no spread to give. Below
it the paired comparison with Random per method and k. ``per_class`` (Tables 3, 5, 7): one row pair
per method at each k, Dice of LV, MYO, RV and their mean, then HD (mm) of each class and the mean,
with the number of infinite HDs (a structure missed) that the means leave out. The paper's values
come from :mod:`paper_values` only; "-" is a value the paper does not give or a cell not run yet.
"""

from __future__ import annotations

from typing import Sequence

from nnunetv2_glrp.reproduction import paper_values
from nnunetv2_glrp.reproduction.cells import Cell, DrawSpread
from nnunetv2_glrp.registry import METHODS, REFERENCE
from nnunetv2_glrp.reproduction.grid import Table
from nnunetv2_glrp.reproduction.statistics import Spread

#: the paper's class order (left to right)
PAPER_CLASS_ORDER = ("LV", "MYO", "RV")
MISSING = "-"


def format_spread(spread: Spread | None, digits: int = 3) -> str:
    if spread is None:
        return MISSING
    if spread.std is None:
        return f"{spread.mean:.{digits}f} (1 draw)"
    return f"{spread.mean:.{digits}f} ({spread.std:.{digits}f})"


def format_draw_spread(value: DrawSpread, digits: int) -> str:
    text = format_spread(value.spread, digits)
    return text + (f", {value.n_inf} inf" if value.n_inf else "")


def _paper(value: float | None, digits: int = 3) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def _draw_note(cells: dict) -> str:
    counts = sorted({c.dice.n_draws for c in cells.values()})
    cases = sorted({c.dice.n_cases for c in cells.values()})
    return (f"{'/'.join(map(str, counts))} draw(s) per cell (a draw = one fold and seed: its k labeled patients "
            f"and initialisation), {'/'.join(map(str, cases))} test cases")


def comparison_lines(cells: dict[tuple[str, int], Cell], methods: Sequence[str], ks: Sequence[int]) -> list[str]:
    """Paired difference to Random of the per-case mean Dice: rows methods, columns k."""
    lines = [f"### Paired difference to {REFERENCE} (mean Dice, same draws and test cases)", "",
             "| method | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|" + "---|" * len(ks)]
    seeds = set()
    for method in methods:
        if method == REFERENCE:
            continue
        row = []
        for k in ks:
            cmp = cells[(method, k)].vs_reference if (method, k) in cells else None
            row.append(cmp.format() if cmp else MISSING)
            if cmp:
                seeds.add((cmp.bootstrap_samples, cmp.bootstrap_seed, cmp.level))
        lines.append(f"| {METHODS[method].label} | " + " | ".join(row) + " |")
    boot = ", ".join(f"{n} resamples, seed {s}" for n, s, _ in sorted(seeds)) or "none"
    lines += ["", f"Method minus {REFERENCE} per test case, paired on the same fold, seed and case; "
              f"[95 % bootstrap interval] resampling draws and cases ({boot}); p: two-sided Wilcoxon signed-rank "
              "test of the per-case differences averaged over draws (scipy.stats.wilcoxon). A cell with 1 draw "
              "resamples cases only: it says nothing about how much another draw of k patients would change."]
    return lines


def dice_by_k(table: Table, cells: dict, methods: Sequence[str], ks: Sequence[int]) -> list[str]:
    lines = ["| method | | " + " | ".join(f"k = {k}" for k in ks) + " |", "|---|---|" + "---|" * len(ks)]
    for method in methods:
        label = METHODS[method].label
        ours = [format_spread(cells[(method, k)].dice) if (method, k) in cells else MISSING for k in ks]
        paper = [_paper(paper_values.table1_value(method, k)) for k in ks]
        lines.append(f"| {label} | ours | " + " | ".join(ours) + " |")
        lines.append(f"| {label} | paper (ACDC) | " + " | ".join(paper) + " |")
    return lines


def per_class(table: Table, cells: dict, methods: Sequence[str], ks: Sequence[int]) -> list[str]:
    head = ([f"Dice {c}" for c in PAPER_CLASS_ORDER] + ["Dice mean"]
            + [f"HD {c} (mm)" for c in PAPER_CLASS_ORDER] + ["HD mean (mm)"])
    lines = []
    for k in ks:
        lines += [f"**k = {k}**", "", "| method | | " + " | ".join(head) + " |", "|---|---|" + "---|" * len(head)]
        for method in methods:
            label, cell = METHODS[method].label, cells.get((method, k))
            if cell is None:
                ours = [MISSING] * len(head)
            else:
                ours = ([format_draw_spread(cell.class_dice[c], 3) for c in PAPER_CLASS_ORDER]
                        + [format_spread(cell.dice)]
                        + [format_draw_spread(cell.class_hd[c], 2) for c in PAPER_CLASS_ORDER]
                        + [format_draw_spread(cell.mean_hd, 2)])
            paper = ([_paper(paper_values.ablation_value(method, "dice", c, k)) for c in PAPER_CLASS_ORDER]
                     + [_paper(paper_values.ablation_value(method, "dice", "mean", k))]
                     + [_paper(paper_values.ablation_value(method, "hd", c, k), 2) for c in PAPER_CLASS_ORDER]
                     + [_paper(paper_values.ablation_value(method, "hd", "mean", k), 2)])
            lines.append(f"| {label} | ours | " + " | ".join(ours) + " |")
            lines.append(f"| {label} | paper (ACDC) | " + " | ".join(paper) + " |")
        lines.append("")
    return lines


def markdown(table: Table, cells: dict[tuple[str, int], Cell], methods: Sequence[str], ks: Sequence[int],
             context: str) -> str:
    """The whole table file: title, what the numbers are, the table, the paired comparison."""
    body = dice_by_k(table, cells, methods, ks) if table.layout == "dice_by_k" else per_class(table, cells, methods, ks)
    lines = [f"# Table {table.number}: {table.title}", "", context, "",
             "Ours: mean over draws (standard deviation across draws); HD: mean over the test cases with a finite "
             "distance, 'n inf' = HDs left out because a structure was missed entirely. "
             + (_draw_note(cells) if cells else "No cell has finished yet.") + ".",
             f"Paper: {paper_values.SOURCE}, ACDC test patients; '-' = not given in the paper or not run here.",
             "", *body, ""]
    if any(m != REFERENCE for m in methods):
        lines += comparison_lines(cells, methods, ks)
    return "\n".join(lines) + "\n"
