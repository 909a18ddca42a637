"""``reproduce``: the run engine over a paper table's grid, then the CSV, tables and figures.

Outputs, all written atomically, under ``out`` (default ``evaluation/results/<dataset>/<configuration>/<budget>/``,
relative to the current folder; ``evaluation/results/`` is git-ignored): what :func:`engine.run` writes
(``runs/<tag>.json`` per run, ``runs.csv``, ``reproduce.json``: the last call, its plan, runs and trainings
done now, wall time) and ``table<N>.md`` + ``table<N>.json`` (the numbers behind it; below the table the
clinical indices per method and k, :mod:`clinical_table`),
``table<N>_dice_vs_k.png``, ``table<N>_class_boxplots.png``, ``table<N>_slices.png``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text
from nnunetv2_glrp.reproduction import engine, estimate, figures, results
from nnunetv2_glrp.reproduction.cells import table_cells
from nnunetv2_glrp.reproduction.clinical_table import cells_to_json, clinical_cells, clinical_lines
from nnunetv2_glrp.reproduction.grid import TABLES, Run, plan_runs, resolve_methods
from nnunetv2_glrp.reproduction.statistics import DEFAULT_BOOTSTRAP, DEFAULT_BOOTSTRAP_SEED
from nnunetv2_glrp.reproduction.tables import markdown

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    out: Path
    runs: list[Run]
    new_runs: int
    new_trainings: int
    seconds: float
    files: list[Path] = field(default_factory=list)
    records: list[results.RunRecord] = field(default_factory=list)


def write_outputs(records: Sequence[results.RunRecord], table_number: int, methods: Sequence[str], ks: Sequence[int],
                  out: Path, raw_dataset: Path, labels: dict[str, int], context: str, name: str | None = None,
                  n_boot: int = DEFAULT_BOOTSTRAP, bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
                  slices: bool = True) -> list[Path]:
    """Table Markdown + JSON and the figures of ``records`` (also used by the demo)."""
    table = TABLES[table_number]
    name = name or f"table{table_number}"
    cells = table_cells(records, methods, ks, list(labels), n_boot, bootstrap_seed)
    files = [out / f"{name}.md", out / f"{name}.json"]
    clinical = "\n".join(clinical_lines(records, methods, ks)) + "\n"
    atomic_write_text(files[0], markdown(table, cells, methods, ks, context) + "\n" + clinical)
    atomic_write_json(files[1], results.encode({"table": table_number, "methods": list(methods), "ks": list(ks),
                                                "context": context, "cells": [c.to_dict() for c in cells.values()],
                                                "clinical": cells_to_json(clinical_cells(records, methods, ks))}))
    files.append(figures.dice_vs_k(cells, methods, ks, out / f"{name}_dice_vs_k.png", table.layout))
    files.append(figures.class_boxplots(records, methods, ks, out / f"{name}_class_boxplots.png"))
    if slices:
        shown = figures.slice_figure(records, methods, max(ks), raw_dataset, labels, out / f"{name}_slices.png")
        files += [shown] if shown else []
    return files


def reproduce(dataset: str, configuration: str, table: int = 1, methods: Sequence[str] | None = None,
              ks: Sequence[int] | None = None, folds: Sequence[int] = (0,), seeds: Sequence[int] = (0, 1, 2),
              budget: str = "cpu", recipe: str = "nnunet", device: str = "cpu", plans: str = "nnUNetPlans",
              out: str | os.PathLike | None = None, n_boot: int = DEFAULT_BOOTSTRAP,
              bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED, pretrained_encoder: str | os.PathLike | None = None,
              on_run: Callable | None = None, pretraining_seeds: str = "shared",
              extra_pools: Sequence[str | int] = (), pretraining_epochs: int | None = None) -> Outcome:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    if table not in TABLES:
        raise ValueError(f"--table must be one of {sorted(TABLES)}, got {table}")
    spec = TABLES[table]
    methods, ks = resolve_methods(methods, spec.methods), tuple(ks or spec.ks)
    if out is None:
        out = engine.default_out(maybe_convert_to_dataset_name(dataset), configuration, budget)
    setting = engine.make_setting(dataset, configuration, out, budget, recipe, device, plans, pretrained_encoder,
                                  pretraining_seeds, extra_pools, pretraining_epochs)
    runs = plan_runs(methods, ks, folds, seeds)
    title = (f"reproduce Table {table}: methods {', '.join(methods)}; k {list(ks)}; folds {list(folds)}; "
             f"seeds {list(seeds)}")
    done = engine.run(setting, runs, ks, folds, title, on_run=on_run, extra={
        "table": table, "methods": list(methods), "k": list(ks), "seeds": list(seeds),
        "bootstrap": {"samples": n_boot, "seed": bootstrap_seed}})
    context = (f"{setting.dataset_name}, configuration {configuration}, plans {plans}, budget {budget}, recipe "
               f"{recipe}; folds {list(folds)}, seeds {list(seeds)}; {done.n_cases} test cases (imagesTs/labelsTs)."
               + (f" Pretrained rows fine-tuned from {setting.pretrained_encoder}." if setting.pretrained_encoder
                  else "")
               + (" Each seed's pretrained rows from their own pretraining (pretraining seed = seed)."
                  if setting.pretraining_seeds == "per-seed" else "")
               + (f" Pretraining adds the train/val frames of {', '.join(setting.extra_pools)}."
                  if setting.extra_pools else "")
               + (f" Pretraining runs {setting.pretraining_epochs} epochs." if setting.pretraining_epochs else ""))
    files = [setting.out / results.CSV_NAME]
    files += write_outputs(done.records, table, methods, ks, setting.out, setting.raw_dataset, done.labels, context,
                           n_boot=n_boot, bootstrap_seed=bootstrap_seed)
    files.append(setting.out / engine.CALL_FILE)
    print(f"{done.new_runs} new runs ({done.new_trainings} trainings) in {estimate.format_duration(done.seconds)}; "
          f"written under {setting.out}: {', '.join(p.name for p in files)}")
    return Outcome(setting.out, runs, done.new_runs, done.new_trainings, done.seconds, files, done.records)
