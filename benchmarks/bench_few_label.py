"""Few-label benchmark: nnU-Net's own trainer from scratch vs the plugin's RandomInit and GLRP.

On the realistic phantom (``make_phantom(difficulty="realistic")``), for every k and every seed of the
k-patient draw, trains through ``nnUNetv2_train`` at one budget (default ``cpu``):

* ``nnU-Net``: ``NnunetControlTrainer_<budget>`` (nnU-Net's ``nnUNetTrainer`` with only the budget's
  epochs/iterations/optimizer; it draws no patients: the benchmark writes the k drawn patients as an
  extra fold of ``splits_final.json``, with the same draw as the plugin's trainers);
* ``Random``: ``RandomInitTrainer_k<K>_<budget>``; ``GLRP``: ``GLRPTrainer_k<K>_<budget>`` (pretrained
  once, cached, shared by all seeds);

predicts the test patients (``nnUNetv2_predict``, no test-time mirroring, to save CPU time) and prints
the test Dice (mean, per class) and, per method, the paired difference to nnU-Net's trainer (and, for
the pretrained rows, to Random) over the test cases of all seeds with a 95 % bootstrap interval (seeds
and cases resampled).

    .venv/bin/python benchmarks/bench_few_label.py [--root DIR] [--patients 40] [--k 2 6]
        [--seeds 0 1 2] [--plans nnunet_cpu] [--budget cpu] [--pretrained-encoder PTH]
        [--out bench_output/few_label.json]

``--pretrained-encoder`` fine-tunes the GLRP rows from one encoder pretrained beforehand with settings of
one's own (``nnUNetv2_glrp pretrain ... --epochs 60``; passed to the trainers as
``GLRP_PRETRAINED_ENCODER``) instead of the budget's preset; those runs get their own results and
prediction folders (named after the encoder's folder), so rows of different pretrainings never mix.

Each seed gets its own ``nnUNet_results`` under ``--root`` (the pretraining cache is shared), so a
rerun with the same ``--root`` skips finished trainings and predictions and a killed run resumes.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))
from nnunetv2_glrp.reproduction.statistics import paired_bootstrap, wilcoxon_p  # noqa: E402

CLASSES = ("RV", "MYO", "LV")
CONTROL = "nnU-Net"


#: GLRP fine-tuned with another recipe than nnU-Net's: "GLRP-<recipe>" (finetuning.recipes.RECIPES)
GLRP_RECIPES = ("decwarm",)
METHODS = (CONTROL, "Random", "GLRP", *(f"GLRP-{r}" for r in GLRP_RECIPES))


def _trainers(k: int, budget: str) -> dict[str, str]:
    return {CONTROL: f"NnunetControlTrainer_{budget}", "Random": f"RandomInitTrainer_k{k}_{budget}",
            "GLRP": f"GLRPTrainer_k{k}_{budget}", **{f"GLRP-{r}": f"GLRPTrainer_k{k}_{r}_{budget}" for r in GLRP_RECIPES}}


def _prepare(root: Path, args) -> Path:
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    phantom = root / "phantom"
    if not (phantom / "DONE").exists():
        make_phantom(phantom, n_patients=args.patients, seed=args.phantom_seed, difficulty="realistic")
        (phantom / "DONE").write_text("ok\n")
    existing = sorted(Path(os.environ["nnUNet_raw"]).glob(f"Dataset{args.dataset:03d}_*"))
    raw = existing[0] if existing else convert_acdc(phantom, args.dataset, split=args.split, seed=args.phantom_seed)
    args.configuration = prepare_dataset(args.dataset, overlay=args.plans, num_processes=2)
    return raw


def _use_results(root: Path, dataset_name: str, seed: int, variant: str = "") -> None:
    results = root / f"results_seed{seed}{variant}"
    os.environ["nnUNet_results"] = os.fspath(results)
    os.environ["GLRP_SEED"] = str(seed)
    shared = root / "pretraining_cache"
    shared.mkdir(parents=True, exist_ok=True)
    link = results / dataset_name / "glrp_pretraining"
    link.parent.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(shared, target_is_directory=True)


def _run(cmd: list[str], log: Path) -> None:
    with open(log, "a") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        done = subprocess.run(cmd, env=os.environ.copy(), stdout=f, stderr=subprocess.STDOUT)
    if done.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}); see {log}")


def _train_and_predict(root: Path, raw: Path, trainer: str, fold: int, args, tag: str) -> Path:
    from nnunetv2_glrp.environment import nnunet_command

    model = Path(os.environ["nnUNet_results"]) / raw.name / f"{trainer}__nnUNetPlans__{args.configuration}" / f"fold_{fold}"
    log = root / "logs" / f"{tag}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    if not (model / "checkpoint_final.pth").exists():
        cmd = [nnunet_command("nnUNetv2_train"), str(args.dataset), args.configuration, str(fold), "-tr", trainer,
               "-device", args.device]
        _run(cmd + (["--c"] if (model / "checkpoint_latest.pth").exists() else []), log)
    pred = root / "predictions" / tag
    if not (pred / "DONE").exists():
        _run([nnunet_command("nnUNetv2_predict"), "-i", os.fspath(raw / "imagesTs"), "-o", os.fspath(pred),
              "-d", str(args.dataset), "-c", args.configuration, "-f", str(fold), "-tr", trainer,
              "-device", args.device, "--disable_tta", "--continue_prediction", "-npp", "1", "-nps", "1"], log)
        (pred / "DONE").write_text("ok\n")
    return pred


def _case_dice(pred: Path, raw: Path, out: Path) -> dict[str, dict[str, float]]:
    """{case: {class: Dice}} from evaluate_folder's per-case CSV."""
    from nnunetv2_glrp.evaluate import evaluate_folder

    evaluate_folder(pred, raw / "labelsTs", out_dir=out)
    with open(out / "metrics_per_case.csv") as f:
        return {row["case"]: {c: float(row[f"{c}_dice"]) for c in CLASSES} for row in csv.DictReader(f)}


def summarise(dice: dict, ks: list[int], seeds: list[int]) -> dict:
    """dice[(method, k, seed)] = {case: {class: Dice}} -> per (method, k): means, per-class means, paired diff.

    The paired difference to nnU-Net's trainer: the 95 % bootstrap interval resamples seeds AND cases
    (``reproduction.statistics.paired_bootstrap``): between two trainings of the same network on the same
    patients the test Dice moves by several points (when a run "takes off" varies), which a case-only
    bootstrap of one seed would hide behind a narrow interval; the Wilcoxon p is over the per-case
    differences averaged over the seeds."""
    out = {}
    for k in ks:
        for method in METHODS:
            done = [s for s in seeds if (method, k, s) in dice and (CONTROL, k, s) in dice]  # a partial run too
            if not done:
                continue
            cases = sorted(dice[(CONTROL, k, done[0])])

            def array(m: str) -> np.ndarray:  # [seeds, cases, classes]
                return np.array([[[dice[(m, k, s)][c][cl] for cl in CLASSES] for c in cases] for s in done])

            per = array(method)
            entry = {"mean_dice": float(per.mean()), "seeds": done, "per_seed": [float(v) for v in per.mean(axis=(1, 2))],
                     "classes": {cl: float(per[:, :, i].mean()) for i, cl in enumerate(CLASSES)}}
            if method != CONTROL:
                entry["paired_vs_nnunet"] = _paired(per, array(CONTROL))
            if method not in (CONTROL, "Random") and all(("Random", k, s) in dice for s in done):
                entry["paired_vs_random"] = _paired(per, array("Random"))
            out[f"{method} k={k}"] = entry
    return out


def _paired(per: np.ndarray, ref: np.ndarray) -> dict:
    """Paired difference of two [seeds, cases, classes] Dice arrays: mean, 95 % interval, Wilcoxon p."""
    diffs = per.mean(axis=2) - ref.mean(axis=2)  # [seeds, cases]
    mean, lo, hi = paired_bootstrap(diffs)
    p, test = wilcoxon_p(diffs.mean(axis=0))
    return {"mean": mean, "ci95": [lo, hi], "wilcoxon_p": p, "test": test}


def _print_table(summary: dict) -> None:
    print(f"\n{'run':<18}{'mean Dice':>10}{'RV':>7}{'MYO':>7}{'LV':>7}  {'per seed':<24}{'vs nnU-Net [95% CI]':>26}"
          f"{'Wilcoxon p':>12}{'vs Random [95% CI]':>26}{'Wilcoxon p':>12}")
    for name, e in summary.items():
        c = e["classes"]
        seeds = " ".join(f"{v:.3f}" for v in e["per_seed"])
        columns = ""
        for key in ("paired_vs_nnunet", "paired_vs_random"):
            diff = e.get(key)
            dtext = f"{diff['mean']:+.3f} [{diff['ci95'][0]:+.3f}, {diff['ci95'][1]:+.3f}]" if diff else "-"
            ptext = f"{diff['wilcoxon_p']:.3g}" if diff else "-"
            columns += f"{dtext:>26}{ptext:>12}"
        print(f"{name:<18}{e['mean_dice']:>10.3f}{c['RV']:>7.3f}{c['MYO']:>7.3f}{c['LV']:>7.3f}  {seeds:<24}{columns}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("bench_output") / "few_label_run",
                        help="working folder (phantom, nnU-Net folders, predictions); reused by a rerun")
    parser.add_argument("-d", "--dataset", type=int, default=911)
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--split", default="6:1:3", help="train:val:test patients of the converted dataset")
    parser.add_argument("--phantom-seed", type=int, default=0)
    parser.add_argument("--plans", default="nnunet_cpu", help="plans overlay (CPU configuration)")
    parser.add_argument("--budget", default="cpu", help="trainer budget suffix (cpu)")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 6])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["nnU-Net", "Random", "GLRP"], choices=METHODS,
                        help="GLRP-<recipe>: GLRP fine-tuned with the _<recipe> trainers (default: nnU-Net Random GLRP)")
    parser.add_argument("--pretrained-encoder", type=Path, default=None,
                        help="pretrained_encoder.pth of a GLRP pretraining on this dataset to fine-tune the GLRP rows "
                             "from (default: the budget's pretraining preset, pretrained by the first GLRP trainer)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench_output") / "few_label.json")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    for name in ("nnUNet_raw", "nnUNet_preprocessed"):
        os.environ[name] = os.fspath(root / name)
    os.environ["nnUNet_results"] = os.fspath(root / "results_seed0")
    for key, value in (("nnUNet_n_proc_DA", "2"), ("nnUNet_def_n_proc", "1"), ("nnUNet_compile", "false")):
        os.environ.setdefault(key, value)
    from nnunetv2_glrp.environment import configure_nnunet_environment

    configure_nnunet_environment(root)
    t_start = time.perf_counter()
    raw = _prepare(root, args)
    from nnunetv2_glrp.finetuning.nnunet_control import write_control_folds

    folds = write_control_folds(Path(os.environ["nnUNet_preprocessed"]) / raw.name, args.k, args.seeds)
    runs = [(m, k, s) for s in args.seeds for k in args.k for m in args.methods]
    print(f"{len(runs)} trainings + predictions on {raw.name} ({args.configuration}, budget {args.budget})")
    dice, wall = {}, {}
    encoder_tag = _named_encoder(args)
    for method, k, seed in runs:
        variant = encoder_tag if method.startswith("GLRP") else ""
        _use_results(root, raw.name, seed, variant)
        trainer = _trainers(k, args.budget)[method]
        fold = folds[(k, seed)] if method == CONTROL else 0
        tag = f"{trainer}_k{k}_seed{seed}{variant}"
        t0 = time.perf_counter()
        pred = _train_and_predict(root, raw, trainer, fold, args, tag)
        dice[(method, k, seed)] = _case_dice(pred, raw, root / "evaluation" / tag)
        wall[tag] = time.perf_counter() - t0
        print(f"{tag}: mean test Dice {np.mean([list(v.values()) for v in dice[(method, k, seed)].values()]):.3f} "
              f"({wall[tag]:.0f} s)", flush=True)
        _write(args, raw, summarise(dice, args.k, args.seeds), wall, t_start)  # a killed run keeps what it has
    _print_table(summarise(dice, args.k, args.seeds))
    print(f"written {args.out}")
    return 0


def _named_encoder(args) -> str:
    """Export ``GLRP_PRETRAINED_ENCODER`` for ``--pretrained-encoder``; the folder-name suffix of its runs."""
    if args.pretrained_encoder is None:
        os.environ.pop("GLRP_PRETRAINED_ENCODER", None)
        return ""
    path = args.pretrained_encoder.resolve()
    os.environ["GLRP_PRETRAINED_ENCODER"] = os.fspath(path)
    return f"__{path.parent.name}"


def _pretraining_record(args) -> dict | None:
    if args.pretrained_encoder is None:
        return None
    import json

    config = args.pretrained_encoder.resolve().parent / "config.json"
    return {"encoder": os.fspath(args.pretrained_encoder), **json.loads(config.read_text())}


def _write(args, raw: Path, summary: dict, wall: dict, t_start: float) -> None:
    record = {"pretrained_encoder": _pretraining_record(args),"dataset": raw.name, "configuration": args.configuration, "budget": args.budget, "k": args.k,
              "seeds": args.seeds, "patients": args.patients, "split": args.split, "phantom_seed": args.phantom_seed,
              "methods": args.methods, "summary": summary, "wall_seconds": wall,
              "total_seconds": time.perf_counter() - t_start}
    from nnunetv2_glrp.atomic_files import atomic_write_json

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, record)


if __name__ == "__main__":
    sys.exit(main())
