"""The one run engine: check everything, print the plan, run the grid, return the typed records.

``reproduce``, the demo and the few-label benchmark all call :func:`run` (they differ only in what
they write from the records). Everything is checked before the first training: the dataset's
``imagesTs``/``labelsTs`` (same cases), every trainer name through nnU-Net's own lookup, every k
against the fold's number of training patients, and the output folder's identity
(``reproduce.json``: dataset, configuration, plans, budget, recipe, named encoder, pretraining seeds, extra
pretraining pools and pretraining epochs; a call with other values is refused, its runs would mix). Outputs under
``setting.out``: ``runs/<tag>.json`` per run, ``runs.csv`` (every run recorded there), ``predictions/<tag>/``,
``logs/``, ``reproduce.json``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.registry import PRETRAINING_SEEDS
from nnunetv2_glrp.reproduction import estimate, results
from nnunetv2_glrp.reproduction.grid import Run
from nnunetv2_glrp.reproduction.runner import control_folds, is_complete, run_grid, trainings
from nnunetv2_glrp.reproduction.training import Setting, done_fraction, is_trained

CALL_FILE = "reproduce.json"
#: what an output folder belongs to: a call with other values is refused (its runs would mix)
IDENTITY = ("dataset", "configuration", "plans", "budget", "recipe", "pretrained_encoder", "pretraining_seeds",
            "extra_pools", "pretraining_epochs")
#: the value of an identity key that folders written before the key existed had
IDENTITY_BEFORE = {"pretraining_seeds": "shared", "extra_pools": [], "pretraining_epochs": None}


def dataset_labels(raw_dataset: Path) -> dict[str, int]:
    """{class name: label value} of ``dataset.json`` without the background (what ``evaluate --dataset_json``
    reads)."""
    from nnunetv2_glrp.evaluate import labels_from_dataset_json

    return labels_from_dataset_json(raw_dataset / "dataset.json")


def identity(setting: Setting) -> dict:
    return {"dataset": setting.dataset_name, "configuration": setting.configuration, "plans": setting.plans,
            "budget": setting.budget, "recipe": setting.recipe,
            "pretrained_encoder": os.fspath(setting.pretrained_encoder) if setting.pretrained_encoder else None,
            "pretraining_seeds": setting.pretraining_seeds, "extra_pools": list(setting.extra_pools),
            "pretraining_epochs": setting.pretraining_epochs}


def check_out_folder(out: Path, wanted: dict) -> None:
    path = out / CALL_FILE
    if path.is_file():
        previous = json.loads(path.read_text(encoding="utf-8"))
        before = {k: previous.get(k, IDENTITY_BEFORE.get(k)) for k in IDENTITY}
        changed = [k for k in IDENTITY if before[k] != wanted[k]]
        if changed:
            was = ", ".join(f"{k} {before[k]!r}" for k in changed)
            raise ValueError(f"{path} belongs to another reproduction ({was}); use another -o for "
                             f"{', '.join(f'{k} {wanted[k]!r}' for k in changed)}")


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
    folds_list, table = json.loads(splits.read_text(encoding="utf-8")), read_cases_table(base)
    for fold in folds:
        if fold >= len(folds_list):
            raise ValueError(f"{splits} has {len(folds_list)} folds, fold {fold} requested")
        n = count_patients(folds_list[fold]["train"], table)
        too_many = [k for k in ks if k > n]
        if too_many:
            raise ValueError(f"k = {too_many} labeled patients requested, but fold {fold} of {splits} has only {n} "
                             f"training patients (e.g. {patient_of_case(folds_list[fold]['train'][0], table)})")


def make_setting(dataset: str | int, configuration: str, out: str | os.PathLike, budget: str = "cpu",
                 recipe: str = "nnunet", device: str = "cpu", plans: str = "nnUNetPlans",
                 pretrained_encoder: str | os.PathLike | None = None, pretraining_seeds: str = "shared",
                 extra_pools: Sequence[str | int] = (), pretraining_epochs: int | None = None) -> Setting:
    """The shared part of every run, from the nnU-Net folders of the environment. ``pretraining_seeds``:
    ``shared`` or ``per-seed`` (``registry.PRETRAINING_SEEDS``); ``extra_pools``: converted datasets (names or
    ids) whose train/val frames the pretrained rows' pretraining adds (``nnUNetv2_glrp pretrain --extra_pools``);
    ``pretraining_epochs``: their pretraining's epochs instead of the budget's preset's (``pretrain --epochs``)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from nnunetv2_glrp.preparation.extra_pools import pool_names, pool_split

    if budget == "paper":
        raise ValueError("--budget paper was renamed: the trainers without a budget suffix are budget 'full'")
    if pretraining_seeds not in PRETRAINING_SEEDS:
        raise ValueError(f"pretraining seeds must be one of {', '.join(PRETRAINING_SEEDS)}, got {pretraining_seeds!r}")
    if pretraining_seeds != "shared" and pretrained_encoder is not None:
        raise ValueError(f"a named encoder ({pretrained_encoder}) is one pretraining for every seed: it cannot be "
                         f"combined with pretraining seeds {pretraining_seeds!r}")
    encoder = Path(pretrained_encoder).resolve() if pretrained_encoder is not None else None
    if encoder is not None and not encoder.is_file():
        raise FileNotFoundError(f"pretrained encoder {encoder} does not exist")
    if extra_pools and pretrained_encoder is not None:
        raise ValueError(f"a named encoder ({pretrained_encoder}) was pretrained already: extra pretraining pools "
                         f"({', '.join(map(str, extra_pools))}) cannot be added to it")
    if pretraining_epochs is not None and pretrained_encoder is not None:
        raise ValueError(f"a named encoder ({pretrained_encoder}) was pretrained already: its pretraining epochs "
                         f"cannot be set ({pretraining_epochs})")
    if pretraining_epochs is not None and int(pretraining_epochs) < 1:
        raise ValueError(f"pretraining epochs must be a positive number, not {pretraining_epochs}")
    name = maybe_convert_to_dataset_name(dataset)
    pools = pool_names(extra_pools, name)
    for pool in pools:
        pool_split(pool)  # a pool that was not converted by this package: the error names it before any training
    return Setting(str(dataset), name, configuration, plans, budget, recipe, device,
                   Path(os.environ["nnUNet_results"]), Path(os.environ["nnUNet_raw"]) / name, Path(out).resolve(),
                   encoder, pretraining_seeds, pools, None if pretraining_epochs is None else int(pretraining_epochs))


@dataclass
class EngineOutcome:
    setting: Setting
    runs: list[Run]
    records: list[results.RunRecord]  # of ``runs``, in run order
    labels: dict[str, int]
    n_cases: int
    new_runs: int
    new_trainings: int
    seconds: float
    call: dict = field(default_factory=dict)


def run(setting: Setting, runs: Sequence[Run], ks: Sequence[int], folds: Sequence[int], title: str,
        extra: dict | None = None, on_run: Callable | None = None) -> EngineOutcome:
    """Check, plan (printed), run every incomplete run, write ``runs.csv`` and ``reproduce.json``."""
    t0 = time.perf_counter()
    labels, cases = dataset_labels(setting.raw_dataset), check_test_set(setting.raw_dataset)
    check_out_folder(setting.out, identity(setting))
    check_k(setting, ks, folds)
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / setting.dataset_name
    setting.control_folds.update(control_folds(preprocessed, runs))
    needed = trainings(setting, runs)
    check_trainers(sorted({t.trainer for t in needed}), setting.budget)
    setting.out.mkdir(parents=True, exist_ok=True)
    complete = [r for r in runs if is_complete(setting, r)]
    todo = [t for t in needed if not is_trained(setting, t)]
    plan = estimate.make_plan(len(runs), len(complete), len(needed), [t.trainer for t in todo], setting.budget,
                              results.read_records(setting.out), [done_fraction(setting, t) for t in todo])
    print(f"{title} on {setting.dataset_name} ({setting.configuration}, budget {setting.budget}, recipe "
          f"{setting.recipe}, {len(cases)} test cases)\n{plan.describe()}", flush=True)
    call = {**(extra or {}), **identity(setting), "device": setting.device, "folds": list(folds),
            "control_folds": {f"k{k}_seed{s}_fold{f}": i for (k, s, f), i in setting.control_folds.items()},
            "plan": asdict(plan) | {"n_trainings_todo": plan.n_trainings_todo,
                                    "estimated_seconds": plan.estimated_seconds}}
    atomic_write_json(setting.out / CALL_FILE, results.encode(call | {"finished": False}))  # the folder's owner
    outcomes = run_grid(setting, runs, labels, on_run)
    results.write_csv(setting.out, results.read_records(setting.out))
    seconds = time.perf_counter() - t0
    new_trainings = sum(len(o.trained) for o in outcomes)
    call |= {"finished": True, "new_runs": len(outcomes), "new_trainings": new_trainings, "total_seconds": seconds,
             "run_seconds": {o.run.tag: o.seconds for o in outcomes}}
    atomic_write_json(setting.out / CALL_FILE, results.encode(call))
    return EngineOutcome(setting, list(runs), results.read_records(setting.out, runs), labels, len(cases),
                         len(outcomes), new_trainings, seconds, call)


def default_out(dataset_name: str, configuration: str, budget: str) -> Path:
    return Path("evaluation") / "results" / dataset_name / configuration / budget

