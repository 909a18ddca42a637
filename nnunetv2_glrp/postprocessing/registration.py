"""Choosing the post-processing on validation data, as nnU-Net determines its own post-processing.

Every candidate (``no CRF``, ``largest component only`` and a small grid of CRF settings) is applied
to the fused validation probabilities and scored with :func:`nnunetv2_glrp.evaluate.summarise`
(mean Dice and mean HD95 over the classes, infinite distances counted apart). A candidate can only
replace ``no CRF`` if it raises the mean Dice AND raises neither the mean HD95 nor the number of
infinite HD95 values: the CRF must never pay for Dice with Hausdorff distance. Among those, the
highest mean Dice wins (then the lower HD95). The record of every candidate and the reason go to
``crf.json``.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.evaluate import METRICS, summarise
from nnunetv2_glrp.metrics import evaluate_labels
from nnunetv2_glrp.postprocessing.crf import LARGEST_COMPONENT_ONLY, NO_CRF, PAPER_SETTING, CRFSetting, postprocess

REGISTRATION_FILE = "crf.json"


def _grid() -> tuple[CRFSetting, ...]:
    """The CRF grid: bilateral width x intensity width, each followed by the largest-component clean-up."""
    return tuple(
        CRFSetting(name=f"crf b{mm:g}mm i{intensity:g} +lcc", bilateral_mm=mm, bilateral_intensity=intensity,
                   largest_component=True)
        for mm in (10.0, 20.0) for intensity in (0.05, 0.15)
    )


#: what ``determine-crf`` evaluates: the baseline first
DEFAULT_CANDIDATES: tuple[CRFSetting, ...] = (NO_CRF, LARGEST_COMPONENT_ONLY, PAPER_SETTING, *_grid())


@dataclass(frozen=True)
class ValidationCase:
    """One validation case: fused probabilities (C, Z, Y, X), image (Z, Y, X), spacing (z, y, x), reference."""

    name: str
    probs: np.ndarray
    image: np.ndarray
    spacing: tuple[float, ...]
    reference: np.ndarray


def score(cases: Sequence[ValidationCase], setting: CRFSetting, labels: dict[str, int]) -> dict:
    """Mean Dice / HD95 of ``setting`` on the cases (``summarise``'s class-averaged means)."""
    rows = []
    for case in cases:
        pred = postprocess(case.probs, case.image, case.spacing, setting)
        row = {"case": case.name}
        for name, m in evaluate_labels(pred, case.reference, case.spacing, labels).items():
            row.update({f"{name}_{metric}": getattr(m, metric) for metric in METRICS})
        rows.append(row)
    summary = summarise(rows, labels)
    return {"mean_dice": summary["mean_dice"], "mean_hd95": summary["mean_hd95"],
            "n_inf_hd95": summary["n_inf_hd95"],
            "dice_per_case": [float(np.nanmean([r[f"{n}_dice"] for n in labels])) for r in rows]}


def _verdict(result: dict, base: dict) -> str | None:
    """None when the candidate qualifies, otherwise why not."""
    if not result["mean_dice"] > base["mean_dice"]:
        return f"mean Dice {result['mean_dice']:.4f} does not exceed no CRF's {base['mean_dice']:.4f}"
    if not result["mean_hd95"] <= base["mean_hd95"]:
        return f"mean HD95 {result['mean_hd95']:.3f} mm is above no CRF's {base['mean_hd95']:.3f} mm"
    if result["n_inf_hd95"] > base["n_inf_hd95"]:
        return f"{result['n_inf_hd95']} infinite HD95 values (no CRF: {base['n_inf_hd95']})"
    return None


def choose_setting(cases: Sequence[ValidationCase], labels: dict[str, int],
                   candidates: Sequence[CRFSetting] = DEFAULT_CANDIDATES, progress: bool = False) -> dict:
    """Score every candidate and pick one by the rule of the module docstring.

    Returns ``{"chosen": setting dict, "reason": str, "candidates": [...]}``; the first candidate must
    be the baseline ``no CRF``."""
    from nnunetv2_glrp.progress import tqdm

    if not cases:
        raise ValueError("no validation cases to determine the post-processing on")
    if candidates[0] != NO_CRF:
        raise ValueError(f"the first candidate must be {NO_CRF.name!r}, got {candidates[0].name!r}")
    results = [score(cases, s, labels) for s in tqdm(candidates, desc="CRF candidates", disable=not progress)]
    base = results[0]
    records, qualified = [], []
    for setting, result in zip(candidates, results):
        why_not = "the baseline" if setting == NO_CRF else _verdict(result, base)
        records.append({"setting": setting.to_dict(), **result, "qualifies": why_not is None,
                        "why_not": why_not})
        if why_not is None:
            qualified.append((result["mean_dice"], -result["mean_hd95"], setting, result))
    if not qualified:
        reason = ("no candidate raised the mean validation Dice without raising the mean HD95 "
                  f"(no CRF: Dice {base['mean_dice']:.4f}, HD95 {base['mean_hd95']:.3f} mm)")
        return {"chosen": NO_CRF.to_dict(), "reason": reason, "candidates": _json_safe(records)}
    _, _, best, result = max(qualified, key=lambda q: (q[0], q[1]))
    reason = (f"{best.name!r} raised the mean validation Dice {base['mean_dice']:.4f} -> {result['mean_dice']:.4f} "
              f"and did not raise the mean HD95 ({base['mean_hd95']:.3f} -> {result['mean_hd95']:.3f} mm); "
              f"highest Dice of the {len(qualified)} candidates that qualified")
    return {"chosen": best.to_dict(), "reason": reason, "candidates": _json_safe(records)}


def _json_safe(value):
    """NaN / inf as strings, so that crf.json is strict JSON."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def write_registration(path: Path, decision: dict, context: dict) -> None:
    """``crf.json``: the context (dataset, configuration, fold, trainers, ...) and the decision."""
    atomic_write_json(path, {**context, **decision})


def load_setting(path: Path, trainers: Sequence[str] | None = None,
                 weights: Sequence[float] | None = None) -> CRFSetting:
    """The setting in a ``crf.json`` written by ``determine-crf`` (key ``chosen``) or a bare setting dict.

    With ``trainers``, a registration made for another set of fused models (or, when it records
    them, other fusion weights) is an error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no registered CRF setting at {path}: run nnUNetv2_glrp determine-crf first "
                                "(or use --crf on / off)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None
    registered = data.get("trainers")
    if trainers is not None and registered is not None and list(registered) != list(trainers):
        raise ValueError(f"{path} was determined for the fusion of {registered}, not of {list(trainers)}: "
                         "run determine-crf with these trainers")
    if trainers is not None and "weights" in data and data["weights"] != (list(weights) if weights else None):
        raise ValueError(f"{path} was determined with fusion weights {data['weights']}, not "
                         f"{list(weights) if weights else None}: run determine-crf with these weights")
    return CRFSetting.from_dict(data["chosen"] if "chosen" in data else data)
