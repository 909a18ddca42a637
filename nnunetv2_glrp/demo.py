"""The end-to-end demo on a synthetic cine dataset (what ``make demo`` runs), on the run engine.

realistic phantom -> ACDC conversion -> nnU-Net planning + the ``nnunet_cpu`` plan (nnU-Net's own 2d
design at CPU size; labeled and unlabeled frames) -> the run engine (``reproduction.engine``, the same
that ``reproduce`` and the few-label benchmark use) at k = 2, one seed: nnU-Net's own trainer from
scratch (``NnunetControlTrainer_cpu`` on the same two drawn patients, given as an extra fold),
``RandomInitTrainer_k2_cpu`` and GLRP pretraining + ``GLRPTrainer_k2_cpu``, each predicted on the test
patients and evaluated -> with ``--semi`` a semi-supervised row: the same GLRP encoder fine-tuned with the ``_semi``
recipe (``GLRPTrainer_k2_semi_cpu``: nnU-Net's supervised loss plus weak-to-strong consistency on the
unlabeled cine frames of the train/val patients; a second run-engine setting under ``<out>/engine_semi``, the
pretraining cache shared) -> post-processing: the Random and GLRP models fused (mean of their
probabilities), the CRF registered on fold 0's validation cases (``determine-crf``), applied to the fused
test probabilities, and the paper's always-on CRF beside it -> Dice/HD/HD95 report, the clinical indices
(LV EF MAE and bias, LV EDV and mass MAE) per row and a small Table 1.
The fusion of Random + GLRP only shows the machinery on the models the demo trains; the paper fuses GRP,
LRP and GLRP models (``nnUNetv2_glrp predict -tr GRPTrainer_k2 LRPTrainer_k2 GLRPTrainer_k2``).

The demo keeps its own nnU-Net folders under ``--out`` (it never touches a user's nnUNet_raw etc.),
and every step is skipped when its output exists, so a killed demo resumes where it stopped.
The seed is written to ``<out>/demo_config.json``; the engine's records, predictions and logs are under
``<out>/engine/``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text
from nnunetv2_glrp.environment import NNUNET_FOLDERS, configure_nnunet_environment

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
    methods: tuple[str, ...] = ("nnU-Net", "Random", "GLRP")
    #: methods also fine-tuned with the ``_semi`` recipe (one row each, "<method>_semi"); () for none. Off by
    #: default (``demo --semi`` / ``make demo DEMO_ARGS=--semi``, 4.6 min more on a 2-core CPU, measured): at the
    #: demo's 200 iterations the teacher never becomes confident, so the row shows no gain and would tell a new
    #: user the opposite of what ``_semi`` does at 1,000 iterations on real ACDC (docs/benchmarks.md)
    semi_methods: tuple[str, ...] = ()
    budget: str = "cpu"
    fused: tuple[str, ...] = ("GLRP", "Random")  # methods fused; crf.json goes to the first one's model folder
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
    wanted = json.loads(json.dumps({k: v for k, v in asdict(cfg).items() if k != "out"}))  # tuples as lists
    if path.exists():
        previous = {k: v for k, v in json.loads(path.read_text(encoding="utf-8")).items() if k != "out"}
        if previous != wanted:
            changed = sorted(k for k in wanted if previous.get(k) != wanted[k])
            raise ValueError(
                f"{path} was written by a demo with other settings ({', '.join(changed)} differ) whose outputs "
                "would be reused: pass another --out, or delete that folder"
            )
        return
    atomic_write_json(path, {"out": cfg.out, **wanted})


def run_demo(cfg: DemoConfig) -> dict:
    out = Path(cfg.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _use_demo_folders(out)
    _record_config(cfg, out / "demo_config.json")
    os.environ["GLRP_SEED"] = str(cfg.seed)
    timings: dict[str, float] = {}

    from nnunetv2_glrp.evaluate import evaluate_folder
    from nnunetv2_glrp.preparation.phantom_dataset import prepare_phantom_dataset
    from nnunetv2_glrp.reproduction import engine
    from nnunetv2_glrp.reproduction.grid import plan_runs

    with _step("phantom, conversion, plan + preprocess", timings):
        raw_dataset, configuration = prepare_phantom_dataset(out / "phantom_acdc", cfg.dataset_id, cfg.patients,
                                                             cfg.seed, cfg.frames, cfg.difficulty,
                                                             overlay=cfg.plans)
    with _step("train, predict, evaluate (run engine)", timings):
        setting = engine.make_setting(cfg.dataset_id, configuration, out / "engine", cfg.budget, device=cfg.device)
        runs = plan_runs(cfg.methods, (cfg.k,), (cfg.fold,), (cfg.seed,))
        done = engine.run(setting, runs, (cfg.k,), (cfg.fold,), f"demo: {', '.join(cfg.methods)} at k = {cfg.k}")
    by_method = {r.method: r for r in done.records}
    rows = {f"{m} ({', '.join(r.trainers)})": r.summary for m, r in by_method.items()}
    semi_records = []
    if cfg.semi_methods:
        with _step("semi-supervised fine-tuning, predict, evaluate (run engine, _semi recipe)", timings):
            semi_setting = engine.make_setting(cfg.dataset_id, configuration, out / "engine_semi", cfg.budget,
                                               recipe="semi", device=cfg.device)
            semi = engine.run(semi_setting, plan_runs(cfg.semi_methods, (cfg.k,), (cfg.fold,), (cfg.seed,)),
                              (cfg.k,), (cfg.fold,), f"demo: {', '.join(cfg.semi_methods)} _semi at k = {cfg.k}")
        semi_records = semi.records
        rows.update({f"{r.method}_semi ({', '.join(r.trainers)})": r.summary for r in semi_records})
    with _step("fusion + CRF", timings):
        for name, pred_dir in _postprocess(cfg, setting, done.runs, out).items():
            rows[name] = evaluate_folder(pred_dir, raw_dataset / "labelsTs", out_dir=out / "evaluation" / name)

    report = _format_report(cfg, rows, timings)
    table = small_table1(cfg, done.records, raw_dataset, out)
    if table is not None:
        report += f"\nSmall Table 1 (Random vs GLRP at k = {cfg.k}, paired comparison): {table.name} and its PNGs.\n"
    atomic_write_text(out / "demo_report.md", report)
    print(report)
    if table is not None:
        print(table.read_text(encoding="utf-8"))
    return {"results": rows, "timings": timings, "records": done.records, "semi_records": semi_records}


def _postprocess(cfg: DemoConfig, setting, runs, out: Path) -> dict[str, Path]:
    """Fused predictions of the ``cfg.fused`` methods' models without CRF, with the registered post-processing
    and with the paper's always-on CRF: {row name: prediction folder}. Each step resumes (finished cases are
    skipped, an existing registration is reused)."""
    from nnunetv2_glrp.postprocessing.crf import PAPER_SETTING
    from nnunetv2_glrp.postprocessing.prediction import crf_folder, predict_folder
    from nnunetv2_glrp.postprocessing.registration import load_setting
    from nnunetv2_glrp.postprocessing.validation_data import determine_crf
    from nnunetv2_glrp.reproduction.runner import ensemble

    parts = [ensemble(setting, next(r for r in runs if r.method == m)) for m in cfg.fused]
    fused = replace(parts[0], trainers=tuple(t for p in parts for t in p.trainers))
    if any(p.results_root != fused.results_root or p.fold != fused.fold for p in parts):
        raise ValueError(f"the fused methods {cfg.fused} have models in different folders or folds")
    if not fused.registration_path.is_file():
        determine_crf(fused, device=cfg.device)
    registered = load_setting(fused.registration_path, fused.trainers)
    images, fused_dir = setting.raw_dataset / "imagesTs", out / "predictions" / "fused"
    predict_folder(images, fused_dir, fused, crf="off", save_probabilities=True, device=cfg.device)
    label = " + ".join(cfg.fused)
    rows = {f"fused {label}, no CRF": fused_dir}
    for name, crf in ((f"registered: {registered.name}", registered), ("paper CRF, always on", PAPER_SETTING)):
        folder = out / "predictions" / f"fused_{crf.name.replace(' ', '_').replace('(', '').replace(')', '')}"
        crf_folder(fused_dir, images, folder, crf)
        rows[f"fused {label}, {name}"] = folder
    return rows


def _format_report(cfg: DemoConfig, results: dict, timings: dict) -> str:
    lines = [f"# GLRP demo ({cfg.difficulty} synthetic phantom, k = {cfg.k} labeled patients, {cfg.budget} budget)", "",
             "nnU-Net is nnU-Net's own nnUNetTrainer from scratch (only the budget applied), trained on the same "
             f"{cfg.k} patients as the other rows. The _semi rows add the unlabeled cine frames of the training "
             "and validation patients during fine-tuning (weak-to-strong consistency after UniMatch).", "",
             "| row | Dice RV | Dice MYO | Dice LV | mean Dice | mean HD (mm) | mean HD95 (mm) | "
             "empty class predictions |", "|---|---|---|---|---|---|---|---|"]
    for name, s in results.items():
        c = s["classes"]
        lines.append(f"| {name} | {c['RV']['dice']['mean']:.3f} | {c['MYO']['dice']['mean']:.3f} | "
                     f"{c['LV']['dice']['mean']:.3f} | {s['mean_dice']:.3f} | {s['mean_hd']:.1f} | "
                     f"{s['mean_hd95']:.1f} | {s['n_inf_hd']} |")
    lines += ["", f"Test set: {next(iter(results.values()))['n_cases']} cases (ED and ES of the test patients). "
              "HD is averaged over finite values; an empty prediction of a present class has no HD "
              "and is counted in the last column. The fused rows average the probabilities of the models "
              "named; 'registered' is the post-processing determine-crf chose on fold 0's validation cases "
              "(a CRF only if it raised validation Dice without raising HD95, else no CRF or the largest "
              "component per class); the paper's CRF is applied whatever it does."]
    lines += [""] + clinical_report_lines(results)
    lines += ["", "| step | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    lines += [f"| total | {sum(timings.values()):.1f} |", ""]
    return "\n".join(lines)


def clinical_report_lines(results: dict) -> list[str]:
    """The demo report's clinical table: per row the LV EF MAE and bias (%), LV EDV MAE (mL) and LV mass MAE
    (g) over the test patients (evaluate's ``clinical`` summary); "-" where a row has none."""
    from nnunetv2_glrp.reproduction.clinical_table import COLUMNS, clinical_n, clinical_value

    lines = ["| row | patients | " + " | ".join(head for _, _, head in COLUMNS) + " |",
             "|---|---|" + "---|" * len(COLUMNS)]
    for name, s in results.items():
        values = [clinical_value(s, q, stat) for q, stat, _ in COLUMNS]
        n = clinical_n(s)
        lines.append(f"| {name} | {'-' if n is None else n} | "
                     + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + " |")
    lines += ["", "Clinical indices per test patient from its ED and ES label maps, prediction - reference: MAE = "
              "mean absolute difference, bias = mean difference; EF = 100 x (EDV - ESV) / EDV, LV mass = "
              "myocardium volume at ED x 1.05 g/mL (evaluate's clinical.csv and Bland-Altman plots per row)."]
    return lines


def small_table1(cfg: DemoConfig, records, raw_dataset: Path, out: Path) -> Path | None:
    """``demo_table1.md`` + PNGs: the demo's Random and GLRP rows as ``reproduce --table 1`` shows them
    (the paper's values beside, the paired comparison), from the engine's records: nothing is trained for
    it. One draw: the table says so. None when the demo ran no Random or no GLRP row."""
    from nnunetv2_glrp.reproduction.api import write_outputs
    from nnunetv2_glrp.reproduction.engine import dataset_labels

    shown = [r for r in records if r.method in ("Random", "GLRP")]
    if {r.method for r in shown} != {"Random", "GLRP"}:
        log.info("no small Table 1: the demo ran %s, not a Random and a GLRP row", cfg.methods)
        return None
    labels = dataset_labels(raw_dataset)
    names = {r.method: ", ".join(r.trainers) for r in shown}
    context = (f"Demo: {raw_dataset.name} (synthetic phantom), trainers {names['Random']} and {names['GLRP']}, "
               f"fold {cfg.fold}, GLRP_SEED {cfg.seed}: one draw of k = {cfg.k} patients, so the spread across draws "
               "is not known and the interval covers the test cases only.")
    write_outputs(shown, 1, ("Random", "GLRP"), (cfg.k,), out, raw_dataset, labels, context, name="demo_table1")
    return out / "demo_table1.md"
