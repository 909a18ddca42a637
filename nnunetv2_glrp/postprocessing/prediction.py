"""``predict`` and ``crf``: fused probabilities -> post-processing -> NIfTI label maps in OUT.

Both check what they can before the loop (images, model checkpoints or probability files and
their geometry, the setting), create OUT only when the first case is ready, write every file under a temporary name and rename it when complete, write the label
map of a case last and skip cases whose label map exists, so a killed run resumes without redoing
finished cases. ``OUT/postprocessing.json`` records the setting, the models (trainers, folds, weights) and
nnU-Net's inference settings (step size, test-time mirroring; the worker counts too, which do not change
the outputs and may differ on resume); a resumed run with another setting is refused. A bad case (geometry, class count, probabilities) stops the run with an
error naming it; cases finished before it stay, nothing is half-written.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

from nnunetv2_glrp.atomic_files import atomic_write_json
from nnunetv2_glrp.registry import CRF_MODES
from nnunetv2_glrp.postprocessing.crf import NO_CRF, PAPER_SETTING, CRFSetting, postprocess
from nnunetv2_glrp.postprocessing.registration import load_setting
from nnunetv2_glrp.postprocessing.trained_models import Ensemble, Inference, fused_batch_probabilities, load_predictors
from nnunetv2_glrp.postprocessing.volumes import (
    case_image_files, list_cases, probability_files, read_geometry, read_image, read_probabilities,
    read_properties_geometry, remove_temporary_files, write_label_map, write_probabilities,
)

log = logging.getLogger(__name__)
RUN_RECORD = "postprocessing.json"
#: cases per pass through nnU-Net's worker pipeline (memory: fused probabilities of this many cases)
BATCH_CASES = 16
#: record keys that do not change the outputs: a resumed run may differ in them
_NOT_COMPARED = ("workers",)
#: the inference settings of a prediction record written before they were recorded (nnU-Net's predictor defaults)
_UNRECORDED_DEFAULTS = Inference().outputs()


def resolve_setting(mode: str, ensemble: Ensemble) -> CRFSetting:
    """``auto``: the setting registered by determine-crf; ``on``: the paper's always-on CRF; ``off``: none."""
    if mode == "auto":
        return load_setting(ensemble.registration_path, ensemble.trainers, ensemble.weights)
    if mode == "on":
        return PAPER_SETTING
    if mode == "off":
        return NO_CRF
    raise ValueError(f"--crf must be one of {CRF_MODES}, got {mode!r}")


def _check_previous_run(out: Path, record: dict) -> None:
    """A resumed OUT must come from a run with the same settings; leftover temporary files go."""
    path = out / RUN_RECORD
    if path.exists():
        previous = json.loads(path.read_text(encoding="utf-8"))
        previous.update({k: v for k, v in _UNRECORDED_DEFAULTS.items() if k in record and k not in previous})
        changed = sorted(k for k in set(record) | set(previous)
                         if k not in _NOT_COMPARED and previous.get(k) != record.get(k))
        if changed:
            raise ValueError(f"{out} holds a run with other settings ({', '.join(changed)} differ): "
                             "use another output folder or delete it")
    if out.is_dir():
        remove_temporary_files(out)


def _ensure_output(out: Path, record: dict) -> None:
    """Create OUT and its run record when the first case is ready to be written (not before)."""
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RUN_RECORD).exists():
        atomic_write_json(out / RUN_RECORD, record)


def _todo(cases: Sequence[str], out: Path, file_ending: str, save_probabilities: bool) -> list[str]:
    def done(case):
        return (out / f"{case}{file_ending}").is_file() and (not save_probabilities or (out / f"{case}.npz").is_file())

    finished = [c for c in cases if done(c)]
    if finished:
        log.info("resuming: %d of %d cases already in %s", len(finished), len(cases), out)
    return [c for c in cases if not done(c)]


def predict_folder(images: Path, out: Path, ensemble: Ensemble, crf: str = "auto", save_probabilities: bool = False,
                   device: str = "cpu", file_ending: str = ".nii.gz", inference: Inference = Inference()) -> list[str]:
    """Predict every case of ``images`` with the fused ensemble; returns the cases written now.

    Cases go through nnU-Net in batches of :data:`BATCH_CASES` (its worker pools start once per batch and
    model); a killed run resumes from the first case without a label map."""
    from nnunetv2_glrp.progress import tqdm

    images, out = Path(images), Path(out)
    cases = list_cases(images, file_ending)
    ensemble.check_trained()
    setting = resolve_setting(crf, ensemble)
    record = {"mode": f"predict --crf {crf}", "setting": setting.to_dict(), **ensemble.context(),
              **inference.outputs(), "workers": inference.workers()}
    _check_previous_run(out, record)
    todo = _todo(cases, out, file_ending, save_probabilities)
    predictors = load_predictors(ensemble, device, inference) if todo else []
    with tqdm(total=len(todo), desc="predict", unit="case") as bar:
        for start in range(0, len(todo), BATCH_CASES):
            batch = {case: case_image_files(images, case, file_ending) for case in todo[start:start + BATCH_CASES]}
            read = {case: read_image(files[0]) for case, files in batch.items()}
            fused = fused_batch_probabilities(ensemble, predictors, batch,
                                              {case: image.shape for case, (image, _) in read.items()}, inference)
            for case, (probs, properties) in fused.items():
                image, geometry = read[case]
                labels = postprocess(probs, image, geometry.array_spacing, setting)
                _ensure_output(out, record)
                if save_probabilities:
                    write_probabilities(out, case, probs, properties)
                write_label_map(out / f"{case}{file_ending}", labels, geometry)
                bar.update()
    return todo


def crf_folder(probabilities: Path, images: Path, out: Path, setting: CRFSetting,
               file_ending: str = ".nii.gz") -> list[str]:
    """Post-process nnU-Net probability exports (``CASE.npz`` + ``CASE.pkl``) of every case of ``images``."""
    from nnunetv2_glrp.progress import tqdm

    probabilities, images, out = Path(probabilities), Path(images), Path(out)
    cases = list_cases(images, file_ending)
    for case in cases:  # before OUT exists: every file present, every header consistent
        _, pkl = probability_files(probabilities, case)
        image_file = case_image_files(images, case, file_ending)[0]
        _, geometry = read_geometry(image_file)
        problem = read_properties_geometry(pkl, case).mismatch(geometry)
        if problem is not None:
            raise ValueError(f"case {case}: geometry of {pkl} differs from its image {image_file} ({problem})")
    record = {"mode": "crf", "setting": setting.to_dict(), "probabilities": str(probabilities.resolve())}
    _check_previous_run(out, record)
    todo = _todo(cases, out, file_ending, False)
    for case in tqdm(todo, desc="crf", unit="case"):
        image, geometry = read_image(case_image_files(images, case, file_ending)[0])
        probs = read_probabilities(probabilities, case, image.shape, geometry)
        labels = postprocess(probs, image, geometry.array_spacing, setting)
        _ensure_output(out, record)
        write_label_map(out / f"{case}{file_ending}", labels, geometry)
    return todo
