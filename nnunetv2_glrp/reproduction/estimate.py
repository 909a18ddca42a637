"""The plan printed before ``reproduce`` starts: runs, trainings to do, and an estimated time.

Seconds per training and per prediction + evaluation come from the records of runs finished
earlier in the same output folder at the same budget: each training still to do is timed by the mean of
the earlier trainings of the same trainer (``NnunetControlTrainer_cpulong`` and ``GLRPTrainer_k6_semi_cpulong``
differ 2x), and by the mean of all earlier trainings where its trainer has none yet; without
any, a training of the ``cpu`` budget is estimated from this project's measurement (about 210 s:
``RandomInitTrainer_k*_cpu`` / ``GLRPTrainer_k*_cpu`` on the 30-patient realistic phantom, 2-core
CPU, README "Few-label benchmark"), and other budgets say "unknown" rather than guess. Pretraining
(paid once per pretrained method and preset) and nnU-Net's validation at the end of each training
grow with the dataset and are not in the prior: the printed figure says so.

A killed training resumes (``--c``) from its last checkpoint: it is estimated at the share of its epochs still to
do, and a record of a run that resumed one (``resumed_now``: {trainer: share done before}) counts its wall time as
that remaining share of a whole training (a run's trainings are assumed equally long, as for the even split),
not as a whole one.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from statistics import fmean
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
    #: estimated seconds of each training still to do from the start, by trainer: {trainer: (count, seconds each
    #: or None)}
    training_seconds: dict
    seconds_per_prediction: float | None
    source: str
    #: the killed trainings that resume: ((trainer, share of its epochs done, estimated seconds left or None), ...)
    resumed: tuple = ()

    @property
    def n_trainings_todo(self) -> int:
        return sum(count for count, _ in self.training_seconds.values()) + len(self.resumed)

    @property
    def estimated_seconds(self) -> float | None:
        left = [seconds for _, _, seconds in self.resumed]
        if None in left or any(seconds is None for _, seconds in self.training_seconds.values()):
            return None
        training = sum(count * seconds for count, seconds in self.training_seconds.values()) + sum(left)
        return training + self.n_todo * (self.seconds_per_prediction or 0.0)

    def describe(self) -> str:
        head = (f"{self.n_runs} runs planned: {self.n_complete} already complete, {self.n_todo} to run, "
                f"{self.n_trainings_todo} of their {self.n_trainings} trainings still to train")
        total = self.estimated_seconds
        if not self.n_todo:
            return head + "; nothing to train or predict"
        if total is None:
            return head + "; estimated time: unknown (no finished training of this budget yet to time)"
        several = len(self.training_seconds) > 1
        parts = [f"{count} x {seconds:.0f} s training" + (f" ({trainer})" if several or self.resumed else "")
                 for trainer, (count, seconds) in sorted(self.training_seconds.items())]
        parts += [f"{left:.0f} s to finish {trainer} (resumed at {done:.0%})" for trainer, done, left in self.resumed]
        per = " + ".join(parts) or "no training"
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


def whole_training_seconds(record) -> float | None:
    """Wall seconds of the trainings a finished run made, as if none had resumed: a training it resumed
    (``resumed_now``) counts for the share it still had to do. None when it was not timed (it trained nothing
    itself) or what it resumed had under a tenth of a training left (too little to time)."""
    train = record.wall_seconds.get("train")
    resumed = record.raw.get("resumed_now") or {}
    if train is None:
        return None
    if not resumed:
        return float(train)
    remaining = sum(1.0 - float(resumed.get(trainer, 0.0)) for trainer in record.trained_now)
    return float(train) * len(record.trained_now) / remaining if remaining >= 0.1 else None


def seconds_from_records(records: Sequence, budget: str) -> tuple[dict, float | None]:
    """({trainer: [seconds of each earlier training]}, mean seconds per prediction + evaluation) of finished
    records of ``budget``; a run that trained several models splits its :func:`whole_training_seconds` evenly
    among them."""
    train: dict[str, list[float]] = {}
    predict = []
    for r in records:
        if r.budget != budget:
            continue
        if (seconds := whole_training_seconds(r)) is not None:
            for trainer in r.trained_now:
                train.setdefault(trainer, []).append(seconds / len(r.trained_now))
        w = r.wall_seconds
        predict.append(float(w.get("predict", 0.0)) + float(w.get("evaluate", 0.0)))
    return train, (sum(predict) / len(predict) if predict else None)


def make_plan(n_runs: int, n_complete: int, n_trainings: int, todo_trainers: Sequence[str], budget: str,
              records: Sequence, done_fractions: Sequence[float] = ()) -> Plan:
    """``todo_trainers``: the trainer name of each training still to do (one entry per training);
    ``done_fractions``: the share of its epochs each of them had done when killed (resumed; default all 0)."""
    timed, per_predict = seconds_from_records(records, budget)
    everything = [s for v in timed.values() for s in v]
    if everything:
        fallback = fmean(everything)
        source = f"mean of {len(everything)} earlier trainings in this output folder, per trainer where timed"
    elif budget in PRIOR_TRAINING_SECONDS:
        fallback, source = PRIOR_TRAINING_SECONDS[budget], PRIOR_SOURCE + "; pretraining and nnU-Net's final " \
            "validation not included"
    else:
        fallback, source = None, "no measurement"

    def whole(trainer: str) -> float | None:
        return fmean(timed[trainer]) if trainer in timed else fallback

    done = list(done_fractions) or [0.0] * len(todo_trainers)
    if len(done) != len(todo_trainers):
        raise ValueError(f"{len(done_fractions)} done fractions for {len(todo_trainers)} trainings still to do")
    fresh = Counter(t for t, d in zip(todo_trainers, done) if d <= 0)
    seconds = {t: (n, whole(t)) for t, n in fresh.items()}
    resumed = tuple((t, d, None if whole(t) is None else (1.0 - d) * whole(t))
                    for t, d in zip(todo_trainers, done) if d > 0)
    return Plan(n_runs, n_complete, n_runs - n_complete, n_trainings, seconds, per_predict, source, resumed)
