"""Per-run metric records (``OUT/runs/<tag>.json``), the CSV of all runs, and [draws, cases] arrays.

A record is written (atomically) only when its run is complete: every test case predicted and
evaluated. Its metrics are ``evaluate``'s per-case values; non-finite values are stored as the
strings ``"inf"`` / ``"nan"`` so the file is strict JSON (an infinite distance is a structure missed
entirely, NaN a class absent from both prediction and reference).
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text
from nnunetv2_glrp.evaluate import METRICS
from nnunetv2_glrp.reproduction.grid import Run

RUNS_FOLDER = "runs"
CSV_NAME = "runs.csv"
CSV_COLUMNS = ("method", "k", "fold", "seed", "case", "class", *METRICS, "wall_seconds", "budget", "configuration",
               "trainers")


def encode(value):
    """JSON-safe copy: non-finite floats become "inf", "-inf" or "nan" (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


def as_float(value) -> float:
    return float(value)  # float("inf"), float("nan") read the encoded strings back


def record_path(out: Path, run: Run) -> Path:
    return out / RUNS_FOLDER / f"{run.tag}.json"


def read_metrics_csv(path: Path, classes: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{case: {class: {metric: value}}} from evaluate's ``metrics_per_case.csv``."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no cases")
    try:
        return {row["case"]: {c: {m: float(row[f"{c}_{m}"]) for m in METRICS} for c in classes} for row in rows}
    except KeyError as err:
        raise ValueError(f"{path}: column {err} missing (classes {list(classes)})") from None


def write_record(out: Path, run: Run, record: dict) -> Path:
    path = record_path(out, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, encode(record))
    return path


def read_record(path: Path) -> dict:
    try:
        record = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a run record ({err})") from None
    for key in ("method", "k", "fold", "seed", "cases"):
        if key not in record:
            raise ValueError(f"{path}: run record without {key!r}")
    return record


def read_records(out: Path, runs: Iterable[Run] | None = None) -> list[dict]:
    """The records of ``runs`` that exist (all records in OUT/runs when ``runs`` is None), in run order."""
    if runs is None:
        return [read_record(p) for p in sorted((out / RUNS_FOLDER).glob("*.json"))]
    return [read_record(p) for p in (record_path(out, r) for r in runs) if p.is_file()]


def csv_text(records: Sequence[dict]) -> str:
    """One row per (run, case, class); numbers as Python's shortest round-trip repr."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted(records, key=lambda r: (r["method"], r["k"], r["fold"], r["seed"])):
        wall = as_float(r["wall_seconds"]["total"])
        for case, classes in sorted(r["cases"].items()):
            for name, metrics in classes.items():
                writer.writerow([r["method"], r["k"], r["fold"], r["seed"], case, name,
                                 *(repr(as_float(metrics[m])) for m in METRICS), f"{wall:.1f}", r["budget"],
                                 r["configuration"], " ".join(r["trainers"])])
    return buffer.getvalue()


def write_csv(out: Path, records: Sequence[dict]) -> Path:
    path = out / CSV_NAME
    atomic_write_text(path, csv_text(records))
    return path


def select(records: Sequence[dict], method: str, k: int) -> dict[tuple[int, int], dict]:
    """{(fold, seed): record} of one cell."""
    return {(r["fold"], r["seed"]): r for r in records if r["method"] == method and r["k"] == k}


def case_values(record: dict, metric: str, cls: str | None, cases: Sequence[str]) -> np.ndarray:
    """Per-case values of ``metric`` for class ``cls`` (None: the mean over classes, NaN classes left out)."""
    out = []
    for case in cases:
        if case not in record["cases"]:
            raise ValueError(f"run {record['method']} k={record['k']} fold {record['fold']} seed {record['seed']}: "
                             f"no result for test case {case} (the test sets of the runs differ)")
        classes = record["cases"][case]
        if cls is not None:
            out.append(as_float(classes[cls][metric]))
        else:
            values = [as_float(c[metric]) for c in classes.values()]
            finite = [v for v in values if not math.isnan(v)]
            out.append(float(np.mean(finite)) if finite else math.nan)
    return np.asarray(out, dtype=float)


def cell_array(cell: dict[tuple[int, int], dict], draws: Sequence[tuple[int, int]], metric: str,
               cls: str | None = None) -> tuple[np.ndarray, list[str]]:
    """[draws, cases] array of one cell over ``draws`` (fold, seed), and the sorted case names."""
    if not draws:
        raise ValueError("no draws to tabulate")
    cases = sorted(cell[draws[0]]["cases"])
    return np.stack([case_values(cell[d], metric, cls, cases) for d in draws]), cases


def record_from_evaluation(method: str, k: int, fold: int, seed: int, evaluation: Path, predictions: Path,
                           classes: Sequence[str], **extra) -> dict:
    """A run record from an ``evaluate`` output folder made elsewhere (the demo's), for the tables."""
    return {"method": method, "k": k, "fold": fold, "seed": seed, "predictions": str(predictions),
            "cases": read_metrics_csv(Path(evaluation) / "metrics_per_case.csv", classes), **extra}
