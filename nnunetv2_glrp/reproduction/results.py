"""Run records: one typed :class:`RunRecord` per run, read once; the CSV of all runs; [draws, cases] arrays.

On disk a record is ``OUT/runs/<tag>.json``, written (atomically) only when its run is complete: every
test case predicted and evaluated. Its metrics are ``evaluate``'s per-case values; non-finite values are
stored as the strings ``"inf"`` / ``"nan"`` so the file is strict JSON (an infinite distance is a
structure missed entirely, NaN a class absent from both prediction and reference). In memory a record
holds its metrics as one ``[cases, classes]`` float array per metric, cases sorted by name; tables,
figures, the CSV and the benchmark printout all read these arrays (never the raw JSON again).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text
from nnunetv2_glrp.evaluate import METRICS
from nnunetv2_glrp.registry import METHODS
from nnunetv2_glrp.reproduction.grid import Run

RUNS_FOLDER = "runs"
CSV_NAME = "runs.csv"
CSV_COLUMNS = ("method", "k", "fold", "seed", "case", "class", *METRICS, "wall_seconds", "budget", "configuration",
               "trainers")
Draw = tuple  # (fold, seed)


def encode(value):
    """JSON-safe copy: non-finite floats become "inf", "-inf" or "nan" (recursively)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    return value


@dataclass(frozen=True)
class RunRecord:
    """A finished run: what ran, where its predictions are, and its per-case metrics."""

    run: Run
    cases: tuple[str, ...]  # sorted
    classes: tuple[str, ...]  # dataset.json order, background left out
    metrics: dict[str, np.ndarray] = field(repr=False)  # metric -> [cases, classes]
    predictions: Path | None = None
    budget: str | None = None
    configuration: str | None = None
    trainers: tuple[str, ...] = ()
    wall_seconds: dict = field(default_factory=dict)
    trained_now: tuple[str, ...] = ()
    summary: dict = field(default_factory=dict, repr=False)  # evaluate's summary.json of the run
    raw: dict = field(default_factory=dict, repr=False)  # the whole JSON record (context fields)

    @property
    def method(self) -> str:
        return self.run.method

    @property
    def label(self) -> str:
        return METHODS[self.run.method].label

    @property
    def draw(self) -> Draw:
        return self.run.fold, self.run.seed

    def values(self, metric: str, cls: str | None = None) -> np.ndarray:
        """[cases] values of ``metric`` for class ``cls``; None: the mean over the classes with a value (NaN
        classes, absent from prediction and reference, left out; NaN when none has one)."""
        grid = self.metrics[metric]
        if cls is not None:
            return grid[:, self.classes.index(cls)].copy()
        out = np.full(len(self.cases), math.nan)
        has = ~np.isnan(grid)
        rows = has.any(axis=1)
        out[rows] = np.nansum(np.where(has, grid, 0.0), axis=1)[rows] / has.sum(axis=1)[rows]
        return out

    def case_values(self, metric: str, cases: Sequence[str], cls: str | None = None) -> np.ndarray:
        """:meth:`values` in the order of ``cases``; ValueError naming the run when one is missing."""
        index = {c: i for i, c in enumerate(self.cases)}
        missing = [c for c in cases if c not in index]
        if missing:
            raise ValueError(f"run {self.run.tag}: no result for test case {missing[0]} (the test sets of the runs "
                             "differ)")
        return self.values(metric, cls)[[index[c] for c in cases]]

    @classmethod
    def from_json(cls, record: dict, where: str = "record") -> "RunRecord":
        for key in ("method", "k", "fold", "seed", "cases"):
            if key not in record:
                raise ValueError(f"{where}: run record without {key!r}")
        cases = tuple(sorted(record["cases"]))
        if not cases:
            raise ValueError(f"{where}: a run record without cases")
        classes = tuple(record["cases"][cases[0]])
        try:
            metrics = {m: np.array([[float(record["cases"][c][k][m]) for k in classes] for c in cases], dtype=float)
                       for m in METRICS}
        except KeyError as err:
            raise ValueError(f"{where}: a case lacks {err} (classes {list(classes)})") from None
        run = Run(record["method"], int(record["k"]), int(record["fold"]), int(record["seed"]))
        pred = record.get("predictions")
        return cls(run, cases, classes, metrics, Path(pred) if pred else None, record.get("budget"),
                   record.get("configuration"), tuple(record.get("trainers", ())), dict(record.get("wall_seconds", {})),
                   tuple(record.get("trained_now", ())), dict(record.get("summary", {})), record)


def record_path(out: Path, run: Run) -> Path:
    return out / RUNS_FOLDER / f"{run.tag}.json"


def read_metrics_csv(path: Path, classes: Sequence[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{case: {class: {metric: value}}} from evaluate's ``metrics_per_case.csv``."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path}: no cases")
    try:
        return {row["case"]: {c: {m: float(row[f"{c}_{m}"]) for m in METRICS} for c in classes} for row in rows}
    except KeyError as err:
        raise ValueError(f"{path}: column {err} missing (classes {list(classes)})") from None


def write_record(out: Path, run: Run, record: dict) -> RunRecord:
    path = record_path(out, run)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, encode(record))
    return RunRecord.from_json(record, str(path))


def read_record(path: Path) -> RunRecord:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not a run record ({err})") from None
    return RunRecord.from_json(record, str(path))


def read_records(out: Path, runs: Iterable[Run] | None = None) -> list[RunRecord]:
    """The records of ``runs`` that exist (all records in OUT/runs when ``runs`` is None), in run order."""
    if runs is None:
        return [read_record(p) for p in sorted((out / RUNS_FOLDER).glob("*.json"))]
    return [read_record(p) for p in (record_path(out, r) for r in runs) if p.is_file()]


def csv_text(records: Sequence[RunRecord]) -> str:
    """One row per (run, case, class); numbers as Python's shortest round-trip repr."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in sorted(records, key=lambda r: (r.method, r.run.k, r.run.fold, r.run.seed)):
        wall = float(r.wall_seconds.get("total", math.nan))
        for i, case in enumerate(r.cases):
            for j, name in enumerate(r.classes):
                writer.writerow([r.method, r.run.k, r.run.fold, r.run.seed, case, name,
                                 *(repr(float(r.metrics[m][i, j])) for m in METRICS), f"{wall:.1f}", r.budget,
                                 r.configuration, " ".join(r.trainers)])
    return buffer.getvalue()


def write_csv(out: Path, records: Sequence[RunRecord]) -> Path:
    path = out / CSV_NAME
    atomic_write_text(path, csv_text(records))
    return path


def select(records: Sequence[RunRecord], method: str, k: int) -> dict[Draw, RunRecord]:
    """{(fold, seed): record} of one cell."""
    return {r.draw: r for r in records if r.method == method and r.run.k == k}


def cell_array(cell: dict[Draw, RunRecord], draws: Sequence[Draw], metric: str,
               cls: str | None = None) -> tuple[np.ndarray, list[str]]:
    """[draws, cases] array of one cell over ``draws`` (fold, seed), and the sorted case names."""
    if not draws:
        raise ValueError("no draws to tabulate")
    cases = list(cell[draws[0]].cases)
    return np.stack([cell[d].case_values(metric, cases, cls) for d in draws]), cases
