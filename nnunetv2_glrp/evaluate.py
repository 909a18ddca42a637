"""Evaluate a folder of predicted label maps against reference label maps (Dice, HD, HD95, ASSD) and the
clinical indices (volumes, EF, LV mass; :mod:`nnunetv2_glrp.clinical_indices`).

Writes ``metrics_per_case.csv`` and ``summary.json`` (per class: mean, std and the number of cases
that entered the mean; infinite distances, from an empty prediction, are counted separately as
``n_inf`` and left out of the distance means; ``mean_<metric>`` averages the classes' finite means).
``summary.json`` also holds the same summary of the ED cases and of the ES cases alone (``phases``, as the
ACDC challenge reports them), ``clinical`` (agreement of the clinical indices per quantity,
:mod:`nnunetv2_glrp.agreement`, and the patients skipped with the reason) and ``extra_predictions``
(prediction files without a reference: listed, not scored). ``clinical.csv`` has one row per patient and
quantity; ``bland_altman_<family>.png`` one plot per quantity family (:mod:`nnunetv2_glrp.bland_altman`).

Nothing is scored unless every case can be: every missing prediction is listed in one error, and a
prediction is an error when its file is incomplete (:func:`nnunetv2_glrp.image_io.read_image`), its
grid (size, spacing, origin, direction) differs from the reference's, its voxels are floats, or it
(or the reference) holds a value that is neither background (0) nor one of ``labels``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from nnunetv2_glrp import clinical_indices
from nnunetv2_glrp.agreement import format_agreement, summarise_rows
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


def labels_from_dataset_json(path: str | os.PathLike) -> dict[str, int]:
    """{class name: label value} of a ``dataset.json``'s ``labels``, background left out; ValueError naming
    the file when it has none or uses region-based labels (lists of values)."""
    path = Path(path)
    try:
        labels = json.loads(path.read_text(encoding="utf-8")).get("labels")
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read a dataset.json ({err})") from None
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: no 'labels' mapping")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels.values()):
        raise ValueError(f"{path}: region-based labels (lists of values) are not supported; expected one integer "
                         "label per class")
    return {name: v for name, v in labels.items() if name != "background" and v != 0}


def _folder(path: Path, what: str) -> Path:
    if not path.is_dir():
        state = "is a file" if path.is_file() else "does not exist"
        raise FileNotFoundError(f"{what} folder {path} {state}; expected a folder of label maps")
    return path


def evaluate_folder(
    pred_dir: str | os.PathLike, ref_dir: str | os.PathLike, labels: dict[str, int] = ACDC_LABELS,
    file_ending: str = ".nii.gz", out_dir: str | os.PathLike | None = None,
) -> dict:
    """Metrics of every reference case (see the module docstring for what is an error) and the clinical
    indices of every patient with an ED and an ES case; the summary (also ``summary.json``)."""
    ref_dir = _folder(Path(ref_dir), "reference")
    refs = sorted(p for p in ref_dir.iterdir() if p.name.endswith(file_ending))
    if not refs:
        raise FileNotFoundError(f"no reference files ending in {file_ending} in {ref_dir}")
    pred_dir = _folder(Path(pred_dir), "prediction")
    missing = [r.name for r in refs if not (pred_dir / r.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(refs)} cases have no prediction in {pred_dir}: "
                                f"{', '.join(missing)}")
    names = {r.name for r in refs}
    extra = sorted(p.name for p in pred_dir.iterdir()
                   if p.name.endswith(file_ending) and not p.name.startswith(".") and p.name not in names)
    allowed = {0, *labels.values()}
    rows = []
    ref_volumes: dict[str, dict[str, float]] = {}
    pred_volumes: dict[str, dict[str, float]] = {}
    for ref_path in refs:
        ref = _read_label_map(ref_path, allowed)
        pred = _read_label_map(pred_dir / ref_path.name, allowed)
        problem = geometry_mismatch(pred, ref)
        if problem is not None:
            raise ValueError(f"case {ref_path.name}: prediction and reference differ in {problem}")
        # SimpleITK's spacing is (x, y, z); the array is (z, y, x)
        per_class = evaluate_labels(sitk.GetArrayViewFromImage(pred), sitk.GetArrayViewFromImage(ref),
                                    tuple(reversed(ref.GetSpacing())), labels)
        case = ref_path.name[: -len(file_ending)]
        row = {"case": case}
        for name, m in per_class.items():
            for metric in METRICS:
                row[f"{name}_{metric}"] = float(getattr(m, metric))
        rows.append(row)
        ref_volumes[case] = clinical_indices.structure_volumes_ml(sitk.GetArrayViewFromImage(ref), ref.GetSpacing(),
                                                                  labels)
        pred_volumes[case] = clinical_indices.structure_volumes_ml(sitk.GetArrayViewFromImage(pred),
                                                                   pred.GetSpacing(), labels)
    summary = summarise(rows, labels)
    summary["phases"] = phase_summaries(rows, labels)
    clinical_rows, skipped = clinical_indices.clinical_rows(ref_volumes, pred_volumes, labels)
    summary["clinical"] = clinical_summary(clinical_rows, skipped, labels)
    summary["extra_predictions"] = extra
    if out_dir is not None:
        write_results(rows, summary, Path(out_dir), clinical_rows)
    return summary


def phase_summaries(rows: list[dict], labels: dict[str, int]) -> dict:
    """{"ED": summary of the ED cases, "ES": of the ES cases}: phases without cases are left out."""
    out = {}
    for phase in clinical_indices.PHASES:
        mine = [r for r in rows if (clinical_indices.split_case(r["case"]) or ("", ""))[1] == phase]
        if mine:
            out[phase] = summarise(mine, labels)
    return out


def clinical_summary(rows: list[dict], skipped: dict[str, str], labels: dict[str, int]) -> dict:
    """The ``clinical`` entry of ``summary.json``: patients with indices, quantities and their agreement, the
    patients (or cases) skipped with the reason."""
    quantities = clinical_indices.available_quantities(labels)
    return {"n_patients": len({r["patient"] for r in rows}), "quantities": summarise_rows(rows, quantities),
            "skipped": skipped}


def format_summary(summary: dict) -> str:
    """Console lines: every mean with the number of cases that entered it and of infinite distances."""
    lines = _metric_lines(summary)
    for phase, entry in summary.get("phases", {}).items():
        lines.append(f"{phase} cases only:")
        lines += ["  " + line for line in _metric_lines(entry)]
    clinical = summary.get("clinical")
    if clinical is not None:
        lines.append(f"clinical indices of {clinical['n_patients']} patients (prediction - reference; "
                     "LoA = bias +- 1.96 SD):")
        lines += ["  " + format_agreement(q, s) for q, s in clinical["quantities"].items()]
        if not clinical["quantities"]:
            lines.append("  none: the labels have no LV, RV or MYO")
        lines += [f"  skipped {who}: {why}" for who, why in clinical["skipped"].items()]
    extra = summary.get("extra_predictions", [])
    if extra:
        lines.append(f"note: {len(extra)} prediction file(s) without a reference, not scored: {', '.join(extra)}")
    return "\n".join(lines)


def _metric_lines(summary: dict) -> list[str]:
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
    return lines


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


def _write_csv(path: Path, rows: list[dict], columns) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def write_results(rows: list[dict], summary: dict, out_dir: Path, clinical_rows: list[dict] | None = None) -> None:
    """``metrics_per_case.csv``, ``clinical.csv`` (when ``clinical_rows`` is given; header only when no
    patient has indices), the Bland-Altman PNGs and ``summary.json``, each written atomically."""
    from nnunetv2_glrp.bland_altman import plot_families

    out_dir.mkdir(parents=True, exist_ok=True)
    _write_csv(out_dir / "metrics_per_case.csv", rows, rows[0])
    if clinical_rows is not None:
        _write_csv(out_dir / "clinical.csv", clinical_rows, clinical_indices.CSV_COLUMNS)
        plot_families(clinical_rows, summary.get("clinical", {}).get("quantities", {}), out_dir)
    atomic_write_json(out_dir / "summary.json", summary)
