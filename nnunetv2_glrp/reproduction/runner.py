"""One run = its trainings (``training``), the project's ``predict`` on ``imagesTs``, ``evaluate`` on ``labelsTs``.

Order within a run: train what is missing, predict into ``OUT/predictions/<tag>/`` (resumes: cases
already written are skipped), evaluate into ``OUT/runs/<tag>/``, then write the run record
``OUT/runs/<tag>.json`` last. A run is complete when its record exists and the checkpoints it
records are still the ones in the model folders (same size and modification time); a run whose
model was retrained since is predicted again from scratch (its old predictions are deleted first).
So a rerun retrains and re-predicts nothing, and a run killed anywhere completes on the next call.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.reproduction import results
from nnunetv2_glrp.reproduction.grid import METHODS, Run
from nnunetv2_glrp.reproduction.training import (
    Setting, check_seed, checkpoint_fingerprint, is_trained, train,
)

log = logging.getLogger(__name__)
MODELS_FILE = "models.json"


def prediction_folder(setting: Setting, run: Run) -> Path:
    return setting.out / "predictions" / run.tag


def _fingerprints(setting: Setting, run: Run) -> list[dict]:
    return [checkpoint_fingerprint(setting.model_folder(t, run.fold, run.seed))
            for t in run.trainers(setting.budget, setting.recipe)]


def is_complete(setting: Setting, run: Run) -> bool:
    """The record exists and its models are the current checkpoints."""
    path = results.record_path(setting.out, run)
    if not path.is_file():
        return False
    trainers = run.trainers(setting.budget, setting.recipe)
    if not all(is_trained(setting, t, run.fold, run.seed) for t in trainers):
        return False
    return results.read_record(path).get("models") == _fingerprints(setting, run)


def _predict(setting: Setting, run: Run) -> Path:
    from nnunetv2_glrp.postprocessing.prediction import predict_folder
    from nnunetv2_glrp.postprocessing.trained_models import Ensemble

    work = setting.out / results.RUNS_FOLDER / run.tag
    work.mkdir(parents=True, exist_ok=True)
    pred = prediction_folder(setting, run)
    models, marker = _fingerprints(setting, run), work / MODELS_FILE
    if pred.exists() and (not marker.is_file() or json.loads(marker.read_text()) != models):
        log.info("%s: the models changed since its predictions were made: predicting again", run.tag)
        shutil.rmtree(pred)
    atomic_write_json(marker, models)
    ensemble = Ensemble(dataset=setting.dataset_name, configuration=setting.configuration, fold=str(run.fold),
                        trainers=run.trainers(setting.budget, setting.recipe), plans=setting.plans,
                        results_root=str(setting.seed_root(run.seed)))
    predict_folder(setting.raw_dataset / "imagesTs", pred, ensemble, crf=METHODS[run.method].crf,
                   device=setting.device)
    return pred


@dataclass
class RunOutcome:
    run: Run
    trained: list[str] = field(default_factory=list)
    seconds: dict = field(default_factory=dict)


def execute(setting: Setting, run: Run, labels: dict[str, int]) -> RunOutcome:
    """Train what is missing, predict, evaluate, write the record; returns what was trained and the times."""
    from nnunetv2_glrp.evaluate import evaluate_folder

    t0 = time.perf_counter()
    outcome = RunOutcome(run)
    train_seconds = 0.0
    for trainer in run.trainers(setting.budget, setting.recipe):
        folder = setting.model_folder(trainer, run.fold, run.seed)
        if is_trained(setting, trainer, run.fold, run.seed):
            check_seed(folder, run.seed)
            continue
        train_seconds += train(setting, trainer, run.fold, run.seed)
        outcome.trained.append(trainer)
    t1 = time.perf_counter()
    pred = _predict(setting, run)
    t2 = time.perf_counter()
    evaluation = setting.out / results.RUNS_FOLDER / run.tag / "evaluation"
    summary = evaluate_folder(pred, setting.raw_dataset / "labelsTs", labels=labels, out_dir=evaluation)
    cases = results.read_metrics_csv(evaluation / "metrics_per_case.csv", list(labels))
    t3 = time.perf_counter()
    outcome.seconds = {"train": train_seconds if outcome.trained else None, "predict": t2 - t1,
                       "evaluate": t3 - t2, "total": t3 - t0}
    record = {**asdict(run), "tag": run.tag, "label": METHODS[run.method].label, "dataset": setting.dataset_name,
              "configuration": setting.configuration, "plans": setting.plans, "budget": setting.budget,
              "recipe": setting.recipe, "crf": METHODS[run.method].crf,
              "trainers": list(run.trainers(setting.budget, setting.recipe)),
              "model_folders": [str(setting.model_folder(t, run.fold, run.seed))
                                for t in run.trainers(setting.budget, setting.recipe)],
              "models": _fingerprints(setting, run), "trained_now": outcome.trained,
              "wall_seconds": outcome.seconds, "predictions": str(pred), "n_cases": len(cases),
              "summary": summary, "cases": cases}
    results.write_record(setting.out, run, record)
    return outcome


def run_grid(setting: Setting, runs: Sequence[Run], labels: dict[str, int],
             on_run: Callable[[RunOutcome], None] | None = None) -> list[RunOutcome]:
    """Execute every incomplete run with a progress bar; returns the outcomes of the runs done now."""
    from tqdm import tqdm

    todo = [r for r in runs if not is_complete(setting, r)]
    outcomes = []
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc="reproduce", unit="run") as bar:
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
