"""Evaluate a folder of predicted label maps against reference label maps (Dice, HD, HD95, ASSD).

Writes ``metrics_per_case.csv`` and ``summary.json`` (per class: mean, std and the number of cases
that entered the mean; infinite distances, from an empty prediction, are counted separately as
``n_inf`` and left out of the distance means; ``mean_<metric>`` averages the classes' finite means).
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.metrics import evaluate_labels

ACDC_LABELS = {"RV": 1, "MYO": 2, "LV": 3}
METRICS = ("dice", "hd", "hd95", "assd")


def _read(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    image = sitk.ReadImage(os.fspath(path))
    # SimpleITK's spacing is (x, y, z); the array is (z, y, x)
    return sitk.GetArrayFromImage(image), tuple(reversed(image.GetSpacing()))


def evaluate_folder(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, labels: dict[str, int] = ACDC_LABELS,
    file_ending: str = ".nii.gz", out_dir: str | os.PathLike | None = None,
) -> dict:
    """Metrics of every reference case; a reference without a prediction is an error naming it."""
    pred_dir, ref_dir = Path(pred_dir), Path(ref_dir)
    refs = sorted(p for p in ref_dir.iterdir() if p.name.endswith(file_ending))
    if not refs:
        raise FileNotFoundError(f"no reference files ending in {file_ending} in {ref_dir}")
    rows = []
    for ref_path in refs:
        pred_path = pred_dir / ref_path.name
        if not pred_path.exists():
            raise FileNotFoundError(f"case {ref_path.name}: no prediction {pred_path}")
        ref, spacing = _read(ref_path)
        pred, pred_spacing = _read(pred_path)
        if pred.shape != ref.shape or not np.allclose(pred_spacing, spacing, atol=1e-3):
            raise ValueError(
                f"case {ref_path.name}: prediction shape/spacing {pred.shape}/{pred_spacing} "
                f"differs from reference {ref.shape}/{spacing}"
            )
        per_class = evaluate_labels(pred, ref, spacing, labels)
        row = {"case": ref_path.name[: -len(file_ending)]}
        for name, m in per_class.items():
            for metric in METRICS:
                row[f"{name}_{metric}"] = getattr(m, metric)
        rows.append(row)
    summary = summarise(rows, labels)
    if out_dir is not None:
        write_results(rows, summary, Path(out_dir))
    return summary


def summarise(rows: list[dict], labels: dict[str, int]) -> dict:
    summary: dict = {"n_cases": len(rows), "classes": {}}
    for name in labels:
        entry = {}
        for metric in METRICS:
            values = np.array([r[f"{name}_{metric}"] for r in rows], dtype=float)
            finite = values[np.isfinite(values)]
            entry[metric] = {
                "mean": float(finite.mean()) if finite.size else math.nan,
                "std": float(finite.std()) if finite.size else math.nan,
                "n": int(finite.size),
                "n_inf": int(np.isinf(values).sum()),
            }
        summary["classes"][name] = entry
    for metric in METRICS:
        # mean over the classes that have a finite mean; n_inf says how many distances were undefined
        means = [m for n in labels if np.isfinite(m := summary["classes"][n][metric]["mean"])]
        summary[f"mean_{metric}"] = float(np.mean(means)) if means else math.nan
        summary[f"n_inf_{metric}"] = sum(summary["classes"][n][metric]["n_inf"] for n in labels)
    return summary


def write_results(rows: list[dict], summary: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out_dir / "metrics_per_case.csv.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / "metrics_per_case.csv")
    atomic_write_json(out_dir / "summary.json", summary)
