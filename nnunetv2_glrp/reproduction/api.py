"""``reproduce``: check the inputs, print the plan, run the grid, write the CSV, tables and figures.

Everything is checked before the first training: the dataset's ``imagesTs``/``labelsTs`` (same
cases), every trainer name through nnU-Net's own lookup, and every k against the fold's number of
training patients (when ``splits_final.json`` exists). Outputs, all written atomically, under
``out`` (default ``evaluation/results/<dataset>/<configuration>/<budget>/``, relative to the current
folder; ``evaluation/results/`` is git-ignored): ``runs/<tag>.json`` per run, ``runs.csv`` (every run
recorded in ``out``), ``table<N>.md`` + ``table<N>.json`` (the numbers behind it),
``table<N>_dice_vs_k.png``, ``table<N>_class_boxplots.png``, ``table<N>_slices.png``, and
``reproduce.json`` (the last call: its arguments, the plan, runs and trainings done now, wall time).
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text
from nnunetv2_glrp.reproduction import estimate, figures, results
from nnunetv2_glrp.reproduction.cells import table_cells
from nnunetv2_glrp.reproduction.grid import TABLES, Run, plan_runs, resolve_methods, trainings
from nnunetv2_glrp.reproduction.runner import is_complete, run_grid
from nnunetv2_glrp.reproduction.statistics import DEFAULT_BOOTSTRAP, DEFAULT_BOOTSTRAP_SEED
from nnunetv2_glrp.reproduction.tables import markdown
from nnunetv2_glrp.reproduction.training import Setting, is_trained

log = logging.getLogger(__name__)


@dataclass
class Outcome:
    out: Path
    runs: list[Run]
    new_runs: int
    new_trainings: int
    seconds: float
    files: list[Path] = field(default_factory=list)


def default_out(dataset_name: str, configuration: str, budget: str) -> Path:
    return Path("evaluation") / "results" / dataset_name / configuration / budget


def dataset_labels(raw_dataset: Path) -> dict[str, int]:
    """{class name: label value} of ``dataset.json`` without the background."""
    path = raw_dataset / "dataset.json"
    labels = json.loads(path.read_text()).get("labels")
    if not isinstance(labels, dict) or not labels:
        raise ValueError(f"{path}: no 'labels' mapping")
    if not all(isinstance(v, int) for v in labels.values()):
        raise ValueError(f"{path}: region-based labels (lists of values) are not supported; expected one integer "
                         "label per class")
    return {name: v for name, v in labels.items() if name != "background" and v != 0}


#: what an output folder belongs to: a call with other values is refused (its runs would mix)
IDENTITY = ("dataset", "configuration", "plans", "budget", "recipe")


def check_out_folder(out: Path, identity: dict) -> None:
    path = out / "reproduce.json"
    if path.is_file():
        previous = json.loads(path.read_text())
        changed = [k for k in IDENTITY if previous.get(k) != identity[k]]
        if changed:
            raise ValueError(f"{path} belongs to another reproduction ({', '.join(f'{k} {previous.get(k)!r}' for k in changed)}"
                             f"); use another -o for {', '.join(f'{k} {identity[k]!r}' for k in changed)}")


def check_test_set(raw_dataset: Path) -> list[str]:
    from nnunetv2_glrp.postprocessing.volumes import list_cases

    cases = list_cases(raw_dataset / "imagesTs")
    labels = raw_dataset / "labelsTs"
    missing = [c for c in cases if not (labels / f"{c}.nii.gz").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} of {len(cases)} test cases have no reference in {labels}: "
                                f"{', '.join(missing[:10])}")
    return cases


def check_trainers(names: Sequence[str], budget: str) -> None:
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    for name in names:
        try:
            recursive_find_trainer_class_by_name(name)
        except Exception as err:  # nnU-Net raises RuntimeError with a long text
            raise ValueError(f"trainer {name} not found by nnU-Net's lookup (budget {budget!r}: "
                             f"expected trainers named <Method>Trainer_k<K>_{budget}): {str(err)[:200]}") from None


def check_k(setting: Setting, ks: Sequence[int], folds: Sequence[int]) -> None:
    from nnunetv2_glrp.dataset_split import patient_of_case, read_cases_table
    from nnunetv2_glrp.finetuning.patient_draw import count_patients

    base = Path(os.environ["nnUNet_preprocessed"]) / setting.dataset_name
    splits = base / "splits_final.json"
    if not splits.is_file():
        return  # the first training writes it; the trainer then refuses a k it cannot draw
    folds_list, table = json.loads(splits.read_text()), read_cases_table(base)
    for fold in folds:
        if fold >= len(folds_list):
            raise ValueError(f"{splits} has {len(folds_list)} folds, fold {fold} requested")
        n = count_patients(folds_list[fold]["train"], table)
        too_many = [k for k in ks if k > n]
        if too_many:
            raise ValueError(f"k = {too_many} labeled patients requested, but fold {fold} of {splits} has only {n} "
                             f"training patients (e.g. {patient_of_case(folds_list[fold]['train'][0], table)})")


def write_outputs(records: list[dict], table_number: int, methods: Sequence[str], ks: Sequence[int], out: Path,
                  raw_dataset: Path, labels: dict[str, int], context: str, name: str | None = None,
                  n_boot: int = DEFAULT_BOOTSTRAP, bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED,
                  slices: bool = True) -> list[Path]:
    """Table Markdown + JSON and the figures of ``records`` (also used by the demo)."""
    table = TABLES[table_number]
    name = name or f"table{table_number}"
    cells = table_cells(records, methods, ks, list(labels), n_boot, bootstrap_seed)
    files = [out / f"{name}.md", out / f"{name}.json"]
    atomic_write_text(files[0], markdown(table, cells, methods, ks, context))
    atomic_write_json(files[1], results.encode({"table": table_number, "methods": list(methods), "ks": list(ks),
                                                "context": context, "cells": [c.to_dict() for c in cells.values()]}))
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
              bootstrap_seed: int = DEFAULT_BOOTSTRAP_SEED, on_run: Callable | None = None) -> Outcome:
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    t0 = time.perf_counter()
    if table not in TABLES:
        raise ValueError(f"--table must be one of {sorted(TABLES)}, got {table}")
    spec = TABLES[table]
    methods, ks = resolve_methods(methods, spec), tuple(ks or spec.ks)
    dataset_name = maybe_convert_to_dataset_name(dataset)
    raw_dataset = Path(os.environ["nnUNet_raw"]) / dataset_name
    out = Path(out) if out is not None else default_out(dataset_name, configuration, budget)
    setting = Setting(str(dataset), dataset_name, configuration, plans, budget, recipe, device,
                      Path(os.environ["nnUNet_results"]), raw_dataset, out.resolve())
    labels, cases = dataset_labels(raw_dataset), check_test_set(raw_dataset)
    runs = plan_runs(methods, ks, folds, seeds)
    needed = trainings(runs, budget, recipe)
    check_trainers(sorted({t for t, _, _ in needed}), budget)
    check_k(setting, ks, folds)

    identity = {"dataset": dataset_name, "configuration": configuration, "plans": plans, "budget": budget,
                "recipe": recipe}
    check_out_folder(setting.out, identity)
    setting.out.mkdir(parents=True, exist_ok=True)
    complete = [r for r in runs if is_complete(setting, r)]
    plan = estimate.make_plan(len(runs), len(complete), len(needed),
                              sum(not is_trained(setting, t, f, s) for t, f, s in needed), budget,
                              results.read_records(setting.out))
    print(f"reproduce Table {table} on {dataset_name} ({configuration}, budget {budget}, recipe {recipe}, "
          f"{len(cases)} test cases): methods {', '.join(methods)}; k {list(ks)}; folds {list(folds)}; "
          f"seeds {list(seeds)}\n{plan.describe()}", flush=True)
    call = {"table": table, "methods": list(methods), "k": list(ks), "folds": list(folds), "seeds": list(seeds),
            **identity, "device": device, "bootstrap": {"samples": n_boot, "seed": bootstrap_seed},
            "plan": asdict(plan) | {"estimated_seconds": plan.estimated_seconds}}
    atomic_write_json(setting.out / "reproduce.json", results.encode(call | {"finished": False}))  # the folder's owner
    outcomes = run_grid(setting, runs, labels, on_run)

    records = results.read_records(setting.out, runs)
    files = [results.write_csv(setting.out, results.read_records(setting.out))]
    context = (f"{dataset_name}, configuration {configuration}, plans {plans}, budget {budget}, recipe {recipe}; "
               f"folds {list(folds)}, seeds {list(seeds)}; {len(cases)} test cases (imagesTs/labelsTs).")
    files += write_outputs(records, table, methods, ks, setting.out, raw_dataset, labels, context,
                           n_boot=n_boot, bootstrap_seed=bootstrap_seed)
    seconds = time.perf_counter() - t0
    new_trainings = sum(len(o.trained) for o in outcomes)
    atomic_write_json(setting.out / "reproduce.json", results.encode(
        call | {"finished": True, "new_runs": len(outcomes), "new_trainings": new_trainings, "total_seconds": seconds,
                "run_seconds": {o.run.tag: o.seconds for o in outcomes}}))
    files.append(setting.out / "reproduce.json")
    print(f"{len(outcomes)} new runs ({new_trainings} trainings) in {estimate.format_duration(seconds)}; "
          f"written under {setting.out}: {', '.join(p.name for p in files)}")
    return Outcome(setting.out, runs, len(outcomes), new_trainings, seconds, files)
