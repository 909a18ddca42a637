"""The end-to-end demo on a synthetic cine dataset (what ``make demo`` runs).

realistic phantom -> ACDC conversion -> nnU-Net planning + the ``nnunet_cpu`` plan (nnU-Net's own 2d
design at CPU size; labeled and unlabeled frames) -> through ``nnUNetv2_train``: nnU-Net's own
trainer from scratch (``NnunetControlTrainer_cpu`` on the same k = 2 drawn patients, given as an
extra fold), ``RandomInitTrainer_k2_cpu`` and GLRP pretraining + ``GLRPTrainer_k2_cpu`` ->
``nnUNetv2_predict`` on the test patients -> post-processing: the Random and GLRP models fused (mean of
their probabilities), the CRF registered on fold 0's validation cases (``determine-crf``), applied to the
fused test probabilities, and the paper's always-on CRF beside it -> Dice/HD/HD95 table. The fusion of
Random + GLRP only shows the machinery on the models the demo trains; the paper fuses GRP, LRP and GLRP
models (``nnUNetv2_glrp predict -tr GRPTrainer_k2 LRPTrainer_k2 GLRPTrainer_k2``).

The demo keeps its own nnU-Net folders under ``--out`` (it never touches a user's nnUNet_raw etc.),
and every step is skipped when its output exists, so a killed demo resumes where it stopped.
The seed is written to ``<out>/demo_config.json``.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text
from nnunetv2_glrp.environment import NNUNET_FOLDERS, configure_nnunet_environment, nnunet_command

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemoConfig:
    out: str = "demo_output"
    dataset_id: int = 901
    patients: int = 20
    frames: int = 8
    seed: int = 0
    plans: str = "nnunet_cpu"
    difficulty: str = "realistic"
    fold: int = 0
    k: int = 2
    trainers: tuple[str, ...] = ("NnunetControlTrainer_cpu", "RandomInitTrainer_k2_cpu", "GLRPTrainer_k2_cpu")
    fused: tuple[str, ...] = ("GLRPTrainer_k2_cpu", "RandomInitTrainer_k2_cpu")  # crf.json goes to the first
    device: str = "cpu"


def _use_demo_folders(out: Path) -> None:
    for name in NNUNET_FOLDERS:
        os.environ[name] = os.fspath(out / name)
    configure_nnunet_environment(out)
    # nnU-Net's validation/export otherwise starts 8 worker processes; this machine class has 2 cores
    os.environ.setdefault("nnUNet_def_n_proc", "1")


def _step(name: str, timings: dict):
    class _Timer:
        def __enter__(self):
            log.info("=== %s ===", name)
            self.t0 = time.perf_counter()

        def __exit__(self, *exc):
            timings[name] = time.perf_counter() - self.t0
            if exc[0] is None:
                log.info("%s done in %.1f s", name, timings[name])

    return _Timer()


def _record_config(cfg: DemoConfig, path: Path) -> None:
    """Write the demo's settings; a resumed demo must have the same ones (its outputs are reused)."""
    wanted = {k: v for k, v in asdict(cfg).items() if k != "out"}
    wanted["trainers"], wanted["fused"] = list(wanted["trainers"]), list(wanted["fused"])
    if path.exists():
        previous = {k: v for k, v in json.loads(path.read_text()).items() if k != "out"}
        if previous != wanted:
            changed = sorted(k for k in wanted if previous.get(k) != wanted[k])
            raise ValueError(
                f"{path} was written by a demo with other settings ({', '.join(changed)} differ) whose outputs "
                "would be reused: pass another --out, or delete that folder"
            )
        return
    atomic_write_json(path, {"out": cfg.out, **wanted})


def _run(cmd: list[str]) -> None:
    log.info("$ %s", " ".join(cmd))
    subprocess.run(cmd, check=True, env=os.environ.copy())


def run_demo(cfg: DemoConfig) -> dict:
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _use_demo_folders(out)
    _record_config(cfg, out / "demo_config.json")
    timings: dict[str, float] = {}

    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom
    from nnunetv2_glrp.evaluate import evaluate_folder
    from nnunetv2_glrp.finetuning.nnunet_control import write_control_folds
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    phantom_root = out / "phantom_acdc"
    with _step("phantom", timings):
        if not (phantom_root / "DONE").exists():
            make_phantom(phantom_root, n_patients=cfg.patients, seed=cfg.seed, n_frames=cfg.frames,
                         difficulty=cfg.difficulty, overwrite=True)
            (phantom_root / "DONE").write_text("ok\n")
    with _step("convert", timings):
        raw = Path(os.environ["nnUNet_raw"])
        existing = sorted(raw.glob(f"Dataset{cfg.dataset_id:03d}_*"))
        raw_dataset = existing[0] if existing else convert_acdc(phantom_root, cfg.dataset_id, seed=cfg.seed)
    with _step("plan + preprocess", timings):
        configuration = prepare_dataset(cfg.dataset_id, overlay=cfg.plans, num_processes=2)
        # nnU-Net's own trainer draws no patients: it gets the plugin's k = 2 draw (GLRP_SEED) as a fold
        draw_seed = int(os.environ.setdefault("GLRP_SEED", str(cfg.seed)))
        control_fold = write_control_folds(Path(os.environ["nnUNet_preprocessed"]) / raw_dataset.name, [cfg.k],
                                           [draw_seed], cfg.fold)[(cfg.k, draw_seed)]

    results = {}
    for trainer in cfg.trainers:
        fold = control_fold if trainer.startswith("NnunetControlTrainer") else cfg.fold
        with _step(f"train {trainer}", timings):
            model_dir = _model_folder(raw_dataset.name, trainer, configuration, fold)
            if not (model_dir / "checkpoint_final.pth").exists():
                cmd = [nnunet_command("nnUNetv2_train"), str(cfg.dataset_id), configuration, str(fold),
                       "-tr", trainer, "-device", cfg.device]
                if (model_dir / "checkpoint_latest.pth").exists():
                    cmd.append("--c")  # resume a killed run
                _run(cmd)
        with _step(f"predict {trainer}", timings):
            pred_dir = out / "predictions" / trainer
            _run([nnunet_command("nnUNetv2_predict"), "-i", os.fspath(raw_dataset / "imagesTs"),
                  "-o", os.fspath(pred_dir), "-d", str(cfg.dataset_id), "-c", configuration,
                  "-f", str(fold), "-tr", trainer, "-device", cfg.device, "--save_probabilities",
                  "--continue_prediction", "-npp", "1", "-nps", "1"])
        results[trainer] = evaluate_folder(pred_dir, raw_dataset / "labelsTs", out_dir=out / "evaluation" / trainer)
    with _step("fusion + CRF", timings):
        for name, pred_dir in _postprocess(cfg, raw_dataset, configuration, out).items():
            results[name] = evaluate_folder(pred_dir, raw_dataset / "labelsTs", out_dir=out / "evaluation" / name)

    report = _format_report(results, timings)
    table = small_table1(cfg, raw_dataset, out, int(os.environ["GLRP_SEED"]))
    if table is not None:
        report += f"\nSmall Table 1 (Random vs GLRP at k = {cfg.k}, paired comparison): {table.name} and its PNGs.\n"
    atomic_write_text(out / "demo_report.md", report)
    print(report)
    if table is not None:
        print(table.read_text())
    return {"results": results, "timings": timings}


def _postprocess(cfg: DemoConfig, raw_dataset: Path, configuration: str, out: Path) -> dict[str, Path]:
    """Fused predictions of ``cfg.fused`` without CRF, with the registered post-processing and with the
    paper's always-on CRF: {row name: prediction folder}. Each step resumes (finished cases are skipped,
    an existing registration is reused)."""
    from nnunetv2_glrp.postprocessing.crf import PAPER_SETTING
    from nnunetv2_glrp.postprocessing.prediction import crf_folder, predict_folder
    from nnunetv2_glrp.postprocessing.registration import load_setting
    from nnunetv2_glrp.postprocessing.trained_models import Ensemble
    from nnunetv2_glrp.postprocessing.validation_data import determine_crf

    ensemble = Ensemble(dataset=str(cfg.dataset_id), configuration=configuration, fold=str(cfg.fold),
                        trainers=cfg.fused)
    if not ensemble.registration_path.is_file():
        determine_crf(ensemble, device=cfg.device)
    registered = load_setting(ensemble.registration_path, ensemble.trainers)
    images, fused = raw_dataset / "imagesTs", out / "predictions" / "fused"
    predict_folder(images, fused, ensemble, crf="off", save_probabilities=True, device=cfg.device)
    label = " + ".join(t.split("Trainer")[0] for t in cfg.fused)
    rows = {f"fused {label}, no CRF": fused}
    for name, setting in ((f"registered: {registered.name}", registered), ("paper CRF, always on", PAPER_SETTING)):
        folder = out / "predictions" / f"fused_{setting.name.replace(' ', '_').replace('(', '').replace(')', '')}"
        crf_folder(fused, images, folder, setting)
        rows[f"fused {label}, {name}"] = folder
    return rows


def _model_folder(dataset_name: str, trainer: str, configuration: str, fold: int) -> Path:
    return Path(os.environ["nnUNet_results"]) / dataset_name / f"{trainer}__nnUNetPlans__{configuration}" / f"fold_{fold}"


def _format_report(results: dict, timings: dict) -> str:
    lines = ["# GLRP demo (realistic synthetic phantom, k = 2 labeled patients, CPU budget)", "",
             "NnunetControlTrainer_cpu is nnU-Net's own nnUNetTrainer from scratch (only the CPU budget applied), "
             "trained on the same two patients as the other rows.", "",
             "| trainer | Dice RV | Dice MYO | Dice LV | mean Dice | mean HD (mm) | mean HD95 (mm) | "
             "empty class predictions |", "|---|---|---|---|---|---|---|---|"]
    for trainer, s in results.items():
        c = s["classes"]
        lines.append(f"| {trainer} | {c['RV']['dice']['mean']:.3f} | {c['MYO']['dice']['mean']:.3f} | "
                     f"{c['LV']['dice']['mean']:.3f} | {s['mean_dice']:.3f} | {s['mean_hd']:.1f} | "
                     f"{s['mean_hd95']:.1f} | {s['n_inf_hd']} |")
    lines += ["", f"Test set: {next(iter(results.values()))['n_cases']} cases (ED and ES of the test patients). "
              "HD is averaged over finite values; an empty prediction of a present class has no HD "
              "and is counted in the last column. The fused rows average the probabilities of the models "
              "named; 'registered' is the post-processing determine-crf chose on fold 0's validation cases "
              "(a CRF only if it raised validation Dice without raising HD95, else no CRF or the largest "
              "component per class); the paper's CRF is applied whatever it does."]
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    lines += [f"| total | {sum(timings.values()):.1f} |", ""]
    return "\n".join(lines)


def small_table1(cfg: DemoConfig, raw_dataset: Path, out: Path, seed: int) -> Path | None:
    """``demo_table1.md`` + PNGs: the demo's Random and GLRP rows as ``reproduce --table 1`` shows them
    (the paper's values beside, the paired comparison), from the demo's own per-case evaluations
    (``out/evaluation/<trainer>``): nothing is trained for it. One draw: the table says so. None when
    the demo's trainers are not one Random and one GLRP trainer."""
    from nnunetv2_glrp.reproduction.api import dataset_labels, write_outputs
    from nnunetv2_glrp.reproduction.grid import METHODS
    from nnunetv2_glrp.reproduction.results import record_from_evaluation

    family = {m.trainers[0]: name for name, m in METHODS.items() if len(m.trainers) == 1}
    rows = {family.get(t.split("_k")[0]): t for t in cfg.trainers}
    if not {"Random", "GLRP"} <= rows.keys():
        log.info("no small Table 1: the demo's trainers %s are not a Random and a GLRP trainer", cfg.trainers)
        return None
    labels = dataset_labels(raw_dataset)
    records = [record_from_evaluation(m, cfg.k, cfg.fold, seed, out / "evaluation" / rows[m],
                                      out / "predictions" / rows[m], list(labels)) for m in ("Random", "GLRP")]
    context = (f"Demo: {raw_dataset.name} (synthetic phantom), trainers {rows['Random']} and {rows['GLRP']}, "
               f"fold {cfg.fold}, GLRP_SEED {seed}: one draw of k = {cfg.k} patients, so the spread across draws "
               "is not known and the interval covers the test cases only.")
    write_outputs(records, 1, ("Random", "GLRP"), (cfg.k,), out, raw_dataset, labels, context, name="demo_table1")
    return out / "demo_table1.md"
