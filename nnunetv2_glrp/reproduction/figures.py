"""PNG figures of a table: Dice vs k per method, per-class box plots, test slices with the predictions.

* ``<name>_dice_vs_k.png``: mean Dice over draws per method against k, error bars = the standard
  deviation across draws (none for a cell of one draw), the paper's ACDC values dashed (Table 1; the k = 10 rows for Tables 3, 5, 7).
* ``<name>_class_boxplots.png``: per class (LV, MYO, RV), one box per (method, k) of the per-case
  Dice of all its draws.
* ``<name>_slices.png``: up to three test cases (the first in name order), the slice with the most
  reference foreground; column 1 the image with the reference filled in, then each method's
  prediction (largest k of the table, first draw) filled in with the reference's contours on top (the paper's Figures 5-7).

Every file is written under a temporary name and renamed (``atomic_files.atomic_output``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_output
from nnunetv2_glrp.reproduction import paper_values, results
from nnunetv2_glrp.reproduction.cells import Cell
from nnunetv2_glrp.registry import METHODS
from nnunetv2_glrp.reproduction.tables import PAPER_CLASS_ORDER

CLASS_COLOURS = {"RV": (0.2, 0.4, 1.0), "MYO": (0.1, 0.8, 0.2), "LV": (1.0, 0.3, 0.2)}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return path


def paper_mean_dice(method: str, k: int, layout: str) -> float | None:
    """The paper's mean Dice of a cell: Table 1, or the k = 10 rows for the per-class tables."""
    if layout == "dice_by_k":
        return paper_values.table1_value(method, k)
    return paper_values.ablation_value(method, "dice", "mean", k)


def dice_vs_k(cells: dict[tuple[str, int], Cell], methods: Sequence[str], ks: Sequence[int], path: Path,
              layout: str = "dice_by_k") -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, method in enumerate(methods):
        colour = f"C{i}"
        points = [(k, cells[(method, k)].dice) for k in ks if (method, k) in cells]
        if points:
            x = [k for k, _ in points]
            y = [s.mean for _, s in points]
            err = [s.std or 0.0 for _, s in points]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, color=colour, label=f"{METHODS[method].label} (ours)")
        paper = [(k, v) for k in ks if (v := paper_mean_dice(method, k, layout)) is not None]
        if paper:
            ax.plot(*zip(*paper), linestyle="--", marker="x", color=colour, alpha=0.6,
                    label=f"{METHODS[method].label} (paper, ACDC)")
    ax.set_xlabel("k labeled patients")
    ax.set_ylabel("mean Dice")
    if len(ks) > 2 and max(ks) / min(ks) > 10:
        ax.set_xscale("log")
    ax.set_xticks(list(ks), [str(k) for k in ks])
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Dice vs k (error bars: std across draws)", fontsize=9)
    return _save(fig, path)


def class_boxplots(records: Sequence[results.RunRecord], methods: Sequence[str], ks: Sequence[int], path: Path) -> Path:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(PAPER_CLASS_ORDER), figsize=(4.0 * len(PAPER_CLASS_ORDER), 4.0), sharey=True)
    groups = [(m, k) for k in ks for m in methods if results.select(records, m, k)]
    for ax, cls in zip(np.atleast_1d(axes), PAPER_CLASS_ORDER):
        data = []
        for method, k in groups:
            cell = results.select(records, method, k)
            values, _ = results.cell_array(cell, sorted(cell), "dice", cls)
            data.append(values[np.isfinite(values)].ravel())
        if data:
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(groups) + 1),
                          [f"{METHODS[m].label}\nk={k}" for m, k in groups], rotation=60, fontsize=7)
        ax.set_title(f"Dice {cls} per test case", fontsize=9)
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _show(ax, image: np.ndarray, title: str) -> None:
    low, high = np.percentile(image, (1, 99))
    ax.imshow(np.clip((image - low) / max(high - low, 1e-6), 0, 1), cmap="gray")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def _fill(ax, labels: np.ndarray, classes: dict[str, int]) -> None:
    rgba = np.zeros((*labels.shape, 4))
    for name, value in classes.items():
        rgba[labels == value] = (*CLASS_COLOURS.get(name, (1.0, 1.0, 0.0)), 0.45)
    ax.imshow(rgba)


def _contours(ax, labels: np.ndarray, classes: dict[str, int]) -> None:
    for name, value in classes.items():
        mask = labels == value
        if mask.any() and not mask.all():
            ax.contour(mask.astype(float), levels=[0.5], colors=[CLASS_COLOURS.get(name, (1.0, 1.0, 0.0))],
                       linewidths=0.8)


def slice_figure(records: Sequence[results.RunRecord], methods: Sequence[str], k: int, raw_dataset: Path,
                classes: dict[str, int], path: Path, n_cases: int = 3) -> Path | None:
    """Image + reference, then each method's first-draw prediction at ``k``; None when no method has a run."""
    from nnunetv2_glrp.postprocessing.volumes import read_image

    shown = [(m, results.select(records, m, k)) for m in methods]
    shown = [(m, cell[sorted(cell)[0]]) for m, cell in shown if cell]
    if not shown:
        return None
    cases = list(shown[0][1].cases)[:n_cases]
    plt = _pyplot()
    fig, axes = plt.subplots(len(cases), 1 + len(shown), figsize=(2.4 * (1 + len(shown)), 2.4 * len(cases)),
                             squeeze=False)
    for row, case in zip(axes, cases):
        image, _ = read_image(raw_dataset / "imagesTs" / f"{case}_0000.nii.gz")
        reference, _ = read_image(raw_dataset / "labelsTs" / f"{case}.nii.gz")
        z = int(np.argmax((reference > 0).reshape(reference.shape[0], -1).sum(axis=1)))
        _show(row[0], image[z], f"{case} z={z}\nreference")
        _fill(row[0], reference[z], classes)
        for ax, (method, record) in zip(row[1:], shown):
            prediction, _ = read_image(record.predictions / f"{case}.nii.gz")
            dice = float(record.case_values("dice", [case])[0])
            _show(ax, image[z], f"{record.label} k={k}\nseed {record.run.seed}, Dice {dice:.3f}")
            _fill(ax, prediction[z], classes)  # filled: the prediction; lines: the reference
            _contours(ax, reference[z], classes)
    return _save(fig, path)
