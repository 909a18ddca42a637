"""The plan printed before ``reproduce`` starts: runs, trainings to do, and an estimated time.

Seconds per training and per prediction + evaluation come from the records of runs finished
earlier in the same output folder at the same budget (the mean over those that trained); without
any, a training of the ``cpu`` budget is estimated from this project's measurement (about 210 s:
``RandomInitTrainer_k*_cpu`` / ``GLRPTrainer_k*_cpu`` on the 30-patient realistic phantom, 2-core
CPU, README "Few-label benchmark"), and other budgets say "unknown" rather than guess. Pretraining
(paid once per pretrained method and preset) and nnU-Net's validation at the end of each training
grow with the dataset and are not in the prior: the printed figure says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

#: seconds per training with no finished run to learn from (see the module docstring)
PRIOR_TRAINING_SECONDS = {"cpu": 210.0}
PRIOR_SOURCE = "cpu budget measured on the 30-patient phantom, 2-core CPU (README, few-label benchmark)"


@dataclass(frozen=True)
class Plan:
    n_runs: int
    n_complete: int
    n_todo: int
    n_trainings: int  # distinct trainings the grid needs
    n_trainings_todo: int
    seconds_per_training: float | None
    seconds_per_prediction: float | None
    source: str

    @property
    def estimated_seconds(self) -> float | None:
        if self.n_trainings_todo and self.seconds_per_training is None:
            return None
        return self.n_trainings_todo * (self.seconds_per_training or 0.0) + self.n_todo * (self.seconds_per_prediction or 0.0)

    def describe(self) -> str:
        head = (f"{self.n_runs} runs planned: {self.n_complete} already complete, {self.n_todo} to run, "
                f"{self.n_trainings_todo} of their {self.n_trainings} trainings still to train")
        total = self.estimated_seconds
        if not self.n_todo:
            return head + "; nothing to train or predict"
        if total is None:
            return head + "; estimated time: unknown (no finished training of this budget yet to time)"
        per = f"{self.n_trainings_todo} x {self.seconds_per_training or 0:.0f} s training"
        if self.seconds_per_prediction is not None:
            per += f" + {self.n_todo} x {self.seconds_per_prediction:.0f} s prediction/evaluation"
        else:
            per += " (prediction/evaluation not timed yet)"
        return f"{head}; estimated {per} = {format_duration(total)} ({self.source})"


def format_duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def seconds_from_records(records: Sequence, budget: str) -> tuple[float | None, float | None]:
    """(mean seconds per training, mean seconds per prediction + evaluation) of finished records."""
    train, predict = [], []
    for r in records:
        if r.budget != budget:
            continue
        w = r.wall_seconds
        if r.trained_now and w.get("train") is not None:
            train.append(float(w["train"]) / len(r.trained_now))
        predict.append(float(w.get("predict", 0.0)) + float(w.get("evaluate", 0.0)))
    mean = lambda v: sum(v) / len(v) if v else None  # noqa: E731
    return mean(train), mean(predict)


def make_plan(n_runs: int, n_complete: int, n_trainings: int, n_trainings_todo: int, budget: str,
              records: Sequence) -> Plan:
    per_train, per_predict = seconds_from_records(records, budget)
    if per_train is not None:
        source = f"mean of {sum(1 for r in records if r.trained_now)} earlier runs in this output folder"
    elif budget in PRIOR_TRAINING_SECONDS:
        per_train, source = PRIOR_TRAINING_SECONDS[budget], PRIOR_SOURCE + "; pretraining and nnU-Net's final " \
            "validation not included"
    else:
        source = "no measurement"
    return Plan(n_runs, n_complete, n_runs - n_complete, n_trainings, n_trainings_todo, per_train, per_predict, source)
