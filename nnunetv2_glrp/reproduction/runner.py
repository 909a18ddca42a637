"""One run = its trainings (``training``), the project's ``predict`` on ``imagesTs``, ``evaluate`` on ``labelsTs``.

Order within a run: train what is missing, predict into ``OUT/predictions/<tag>/`` (resumes: cases
already written are skipped), evaluate into ``OUT/runs/<tag>/``, then write the run record
``OUT/runs/<tag>.json`` last. A run is complete when its record exists and the checkpoints it
records are still the ones in the model folders (same size and modification time); a run whose
model was retrained since is predicted again from scratch (its old predictions are deleted first).
So a rerun retrains and re-predicts nothing, and a run killed anywhere completes on the next call.

The control row (``nnU-Net``: nnU-Net's own trainer, which draws no patients) trains on an extra fold
of ``splits_final.json`` holding exactly the cases of the k patients the plugin's trainers draw at the
same seed from the same fold (``finetuning.nnunet_control.write_control_folds``; :func:`control_folds`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.registry import CONTROL_FAMILY, METHODS
from nnunetv2_glrp.reproduction import results
from nnunetv2_glrp.reproduction.grid import Run
from nnunetv2_glrp.reproduction.training import (
    Setting, Training, check_setup, checkpoint_fingerprint, done_fraction, is_trained, train,
)

log = logging.getLogger(__name__)
MODELS_FILE = "models.json"


def control_folds(preprocessed_dataset: Path, runs: Iterable[Run]) -> dict[tuple[int, int, int], int]:
    """{(k, seed, fold): control fold index} for the control runs among ``runs`` (written into
    ``splits_final.json``, patient-level splits first written when missing)."""
    from nnunetv2_glrp.finetuning.nnunet_control import write_control_folds
    from nnunetv2_glrp.finetuning.patient_draw import ensure_patient_level_splits

    wanted = sorted({(r.k, r.seed, r.fold) for r in runs if METHODS[r.method].control})
    if not wanted:
        return {}
    ensure_patient_level_splits(preprocessed_dataset.name, preprocessed_dataset, writer=True)
    out = {}
    for fold in sorted({f for _, _, f in wanted}):
        pairs = [(k, s) for k, s, f in wanted if f == fold]
        for (k, seed), index in write_control_folds(preprocessed_dataset, sorted({k for k, _ in pairs}),
                                                    sorted({s for _, s in pairs}), fold).items():
            out[(k, seed, fold)] = index
    return out


def trainings_of(setting: Setting, run: Run) -> list[Training]:
    """The models a run needs, each at its training fold (the control row's own fold)."""
    names = run.trainers(setting.budget, setting.recipe)
    out = []
    for family, trainer in zip(run.families, names):
        fold = run.fold
        if family == CONTROL_FAMILY:
            key = (run.k, run.seed, run.fold)
            if key not in setting.control_folds:
                raise KeyError(f"{run.tag}: no control fold for k={run.k}, seed {run.seed}, fold {run.fold} "
                               "(runner.control_folds was not called for this run)")
            fold = setting.control_folds[key]
        out.append(Training(family, trainer, fold, run.seed))
    return out


def trainings(setting: Setting, runs: Iterable[Run]) -> list[Training]:
    """Distinct trainings the runs need (GLRP+CRF shares GLRP's), in first-use order."""
    return list(dict.fromkeys(t for run in runs for t in trainings_of(setting, run)))


def prediction_folder(setting: Setting, run: Run) -> Path:
    return setting.out / "predictions" / run.tag


def _fingerprints(setting: Setting, run: Run) -> list[dict]:
    return [checkpoint_fingerprint(setting.model_folder(t.family, t.trainer, t.fold, t.seed))
            for t in trainings_of(setting, run)]


def is_complete(setting: Setting, run: Run) -> bool:
    """The record exists and its models are the current checkpoints."""
    path = results.record_path(setting.out, run)
    if not path.is_file() or not all(is_trained(setting, t) for t in trainings_of(setting, run)):
        return False
    return json.loads(path.read_text(encoding="utf-8")).get("models") == _fingerprints(setting, run)


def ensemble(setting: Setting, run: Run):
    """The run's models as one ``postprocessing.Ensemble`` (their probabilities averaged)."""
    from nnunetv2_glrp.postprocessing.trained_models import Ensemble

    todo = trainings_of(setting, run)
    return Ensemble(dataset=setting.dataset_name, configuration=setting.configuration, fold=str(todo[0].fold),
                    trainers=tuple(t.trainer for t in todo), plans=setting.plans,
                    results_root=os.fspath(setting.seed_root(run.seed, todo[0].family)))


def _predict(setting: Setting, run: Run) -> Path:
    from nnunetv2_glrp.postprocessing.prediction import predict_folder

    work = setting.out / results.RUNS_FOLDER / run.tag
    work.mkdir(parents=True, exist_ok=True)
    pred = prediction_folder(setting, run)
    models, marker = _fingerprints(setting, run), work / MODELS_FILE
    if pred.exists() and (not marker.is_file() or json.loads(marker.read_text(encoding="utf-8")) != models):
        log.info("%s: the models changed since its predictions were made: predicting again", run.tag)
        shutil.rmtree(pred)
    atomic_write_json(marker, models)
    predict_folder(setting.raw_dataset / "imagesTs", pred, ensemble(setting, run), crf=METHODS[run.method].crf,
                   device=setting.device)
    return pred


@dataclass
class RunOutcome:
    run: Run
    trained: list[str] = field(default_factory=list)
    resumed: dict = field(default_factory=dict)  # {trainer: share of its epochs done before this call}
    seconds: dict = field(default_factory=dict)


def execute(setting: Setting, run: Run, labels: dict[str, int]) -> RunOutcome:
    """Train what is missing, predict, evaluate, write the record; returns what was trained and the times."""
    from nnunetv2_glrp.evaluate import evaluate_folder

    t0 = time.perf_counter()
    outcome = RunOutcome(run)
    train_seconds = 0.0
    for t in trainings_of(setting, run):
        if is_trained(setting, t):
            check_setup(setting, t)
            continue
        if done := done_fraction(setting, t):
            outcome.resumed[t.trainer] = done  # its wall time below covers only the rest
        train_seconds += train(setting, t)
        outcome.trained.append(t.trainer)
    t1 = time.perf_counter()
    pred = _predict(setting, run)
    t2 = time.perf_counter()
    evaluation = setting.out / results.RUNS_FOLDER / run.tag / "evaluation"
    summary = evaluate_folder(pred, setting.raw_dataset / "labelsTs", labels=labels, out_dir=evaluation)
    cases = results.read_metrics_csv(evaluation / "metrics_per_case.csv", list(labels))
    t3 = time.perf_counter()
    outcome.seconds = {"train": train_seconds if outcome.trained else None, "predict": t2 - t1,
                       "evaluate": t3 - t2, "total": t3 - t0}
    todo = trainings_of(setting, run)
    record = {**asdict(run), "tag": run.tag, "label": METHODS[run.method].label, "dataset": setting.dataset_name,
              "configuration": setting.configuration, "plans": setting.plans, "budget": setting.budget,
              "recipe": setting.recipe, "crf": METHODS[run.method].crf, "trainers": [t.trainer for t in todo],
              "training_folds": [t.fold for t in todo],
              "pretrained_encoder": os.fspath(setting.pretrained_encoder) if setting.pretrained_encoder else None,
              "pretraining_seeds": setting.pretraining_seeds, "extra_pools": list(setting.extra_pools),
              "pretraining_epochs": setting.pretraining_epochs,
              "model_folders": [os.fspath(setting.model_folder(t.family, t.trainer, t.fold, t.seed)) for t in todo],
              "models": _fingerprints(setting, run), "trained_now": outcome.trained,
              "resumed_now": outcome.resumed,
              "wall_seconds": outcome.seconds, "predictions": os.fspath(pred), "n_cases": len(cases),
              "summary": summary, "cases": cases}
    results.write_record(setting.out, run, record)
    return outcome


def run_grid(setting: Setting, runs: Sequence[Run], labels: dict[str, int],
             on_run: Callable[[RunOutcome], None] | None = None) -> list[RunOutcome]:
    """Execute every incomplete run with a progress bar; returns the outcomes of the runs done now."""
    from nnunetv2_glrp.progress import tqdm

    todo = [r for r in runs if not is_complete(setting, r)]
    outcomes = []
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc="runs", unit="run") as bar:
        for run in todo:
            bar.set_postfix_str(run.tag)
            outcome = execute(setting, run, labels)
            outcomes.append(outcome)
            bar.update(1)
            log.info("%s done in %.0f s (trained: %s)", run.tag, outcome.seconds["total"],
                     ", ".join(outcome.trained) or "nothing")
            if on_run is not None:
                on_run(outcome)
    return outcomes
