"""Evaluate a folder of predicted label maps against reference label maps (Dice, HD, HD95, ASSD).

Writes ``metrics_per_case.csv`` and ``summary.json`` (per class: mean, std and the number of cases
that entered the mean; infinite distances, from an empty prediction, are counted separately as
``n_inf`` and left out of the distance means; ``mean_<metric>`` averages the classes' finite means).

Nothing is scored unless every case can be: every missing prediction is listed in one error, and a
prediction is an error when its file is incomplete (:func:`nnunetv2_glrp.image_io.read_image`), its
grid (size, spacing, origin, direction) differs from the reference's, its voxels are floats, or it
(or the reference) holds a value that is neither background (0) nor one of ``labels``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.image_io import geometry_mismatch, read_image
from nnunetv2_glrp.metrics import evaluate_labels

ACDC_LABELS = {"RV": 1, "MYO": 2, "LV": 3}
METRICS = ("dice", "hd", "hd95", "assd")


def _read_label_map(path: Path, allowed: set[int]) -> sitk.Image:
    """A complete integer label map whose values are all in ``allowed``; ValueError naming the file otherwise."""
    image = read_image(path)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel, expected a label map")
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{path}: voxels are {array.dtype}, a label map must have an integer voxel type")
    bad = sorted(set(np.unique(array).tolist()) - allowed)
    if bad:
        raise ValueError(f"{path}: label values {bad[:10]} are not background or one of the labels {sorted(allowed)}")
    return image


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        state = "is a file" if path.is_file() else "does not exist"
        raise FileNotFoundError(f"{what} folder {path} {state}; expected a folder of label maps")
    return path


def evaluate_folder(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, labels: dict[str, int] = ACDC_LABELS,
    file_ending: str = ".nii.gz", out_dir: str | os.PathLike | None = None,
) -> dict:
    """Metrics of every reference case (see the module docstring for what is an error)."""
    ref_dir = _folder(Path(ref_dir), "reference")
    refs = sorted(p for p in ref_dir.iterdir() if p.name.endswith(file_ending))
    if not refs:
        raise FileNotFoundError(f"no reference files ending in {file_ending} in {ref_dir}")
    pred_dir = _folder(Path(pred_dir), "prediction")
    missing = [r.name for r in refs if not (pred_dir / r.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(refs)} cases have no prediction in {pred_dir}: "
                                f"{', '.join(missing)}")
    allowed = {0, *labels.values()}
    rows = []
    for ref_path in refs:
        ref = _read_label_map(ref_path, allowed)
        pred = _read_label_map(pred_dir / ref_path.name, allowed)
        problem = geometry_mismatch(pred, ref)
        if problem is not None:
            raise ValueError(f"case {ref_path.name}: prediction and reference differ in {problem}")
        # SimpleITK's spacing is (x, y, z); the array is (z, y, x)
        per_class = evaluate_labels(sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(ref),
                                    tuple(reversed(ref.GetSpacing())), labels)
        row = {"case": ref_path.name[: -len(file_ending)]}
        for name, m in per_class.items():
            for metric in METRICS:
                row[f"{name}_{metric}"] = getattr(m, metric)
        rows.append(row)
    summary = summarise(rows, labels)
    if out_dir is not None:
        write_results(rows, summary, Path(out_dir))
    return summary


def format_summary(summary: dict) -> str:
    """Console lines: every mean with the number of cases that entered it and of infinite distances."""
    lines = [f"{summary['n_cases']} cases"]
    for metric in METRICS:
        unit = "" if metric == "dice" else " mm"
        parts = []
        for name, entry in summary["classes"].items():
            m = entry[metric]
            inf = f", {m['n_inf']} infinite" if m["n_inf"] else ""
            parts.append(f"{name} {m['mean']:.3f}{unit} (n={m['n']}{inf})")
        total_inf = summary[f"n_inf_{metric}"]
        note = f" (+ {total_inf} infinite, not in the mean: a structure missed or predicted where there is none)" \
            if total_inf else ""
        lines.append(f"mean_{metric} {summary[f'mean_{metric}']:.3f}{unit}{note}: " + "; ".join(parts))
    return "\n".join(lines)


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
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, out_dir / "metrics_per_case.csv")
    atomic_write_json(out_dir / "summary.json", summary)
