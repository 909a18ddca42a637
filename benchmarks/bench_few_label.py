"""Few-label benchmark: nnU-Net's own trainer from scratch vs the plugin's RandomInit and GLRP, on the run engine.

On the realistic phantom (``make_phantom(difficulty="realistic")``), or on a dataset of one's own that
is already converted and prepared (``-d ID -c CONFIGURATION --no-phantom``, e.g. real ACDC), runs through
the one run engine (``nnunetv2_glrp.reproduction.engine``, as ``reproduce`` and the demo do), for every k
and every seed of the k-patient draw, at one budget (default ``cpu``):

* ``nnU-Net``: ``NnunetControlTrainer_<budget>`` (nnU-Net's ``nnUNetTrainer`` with only the budget's
  epochs/iterations/optimizer; it draws no patients: the engine hands it the k drawn patients as an
  extra fold of ``splits_final.json``, the same draw as the plugin's trainers);
* ``Random``: ``RandomInitTrainer_k<K>_<budget>``; ``GLRP``: ``GLRPTrainer_k<K>_<budget>`` (pretrained
  once, cached, shared by all seeds); any other method of ``--methods`` (``reproduce``'s names);

and prints the test Dice (mean, per class, per seed and the spread across seeds) and, per method, the
paired difference to nnU-Net's trainer and to Random over the test cases of all seeds with a 95 %
bootstrap interval (seeds and cases resampled) and the Wilcoxon p (``reproduction.statistics``).

    .venv/bin/python benchmarks/bench_few_label.py [--root DIR] [--patients 40] [--k 2 6]
        [--seeds 0 1 2] [--plans nnunet_cpu] [--budget cpu] [--recipe nnunet] [--pretrained-encoder PTH]
        [--pretraining-seeds per-seed] [--extra-pools 802] [--pretraining-epochs 60]

``--pretrained-encoder`` fine-tunes the pretrained rows from one encoder pretrained beforehand with
settings of one's own (``nnUNetv2_glrp pretrain ... --epochs 60``; the engine passes it as
``GLRP_PRETRAINED_ENCODER``) instead of the budget's preset; those models get their own results tree and
the engine output folder its own name, so rows of different pretrainings never mix (Random and nnU-Net
are shared). Everything lives under ``--root`` (phantom, nnU-Net folders, the engine's output folder
``engine_<budget>_<recipe>[__<encoder folder>]/``); a rerun with the same ``--root`` skips finished runs
and a killed one resumes. The summary is also written as JSON (``--out``).

``--pretraining-seeds per-seed`` gives seed S's pretrained rows an encoder pretrained with seed S (S
pretrainings instead of one; engine folder ``engine_<budget>_<recipe>__per_seed_pretraining``), so that the
seeds also sample the pretraining draw, as each user's single pretraining does, and the intervals include it.
``--extra-pools 802`` adds the train/val frames of other converted datasets (e.g. Sunnybrook, ``convert-sunnybrook``)
to the pretrained rows' pretraining (engine folder suffix ``__pools_<dataset names>``, its own results tree).
``--pretraining-epochs 60`` pretrains them 60 epochs instead of the preset's (3,000 iterations instead of the cpu
preset's 1,500; engine folder suffix ``__pretrain_60ep``, its own results tree).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))

CONTROL = "nnU-Net"
CLASSES = ("RV", "MYO", "LV")


def summarise(records, methods, ks, labels) -> dict:
    """{"<method> k=<k>": mean Dice, per class, per seed, spread across seeds, paired differences}."""
    from nnunetv2_glrp.reproduction.cells import table_cells

    cells = table_cells(records, methods, ks, list(labels), references=(CONTROL, "Random"))
    out = {}
    # printed per k: the control row first, then the others in the engine's order (Random first)
    for (method, k), cell in sorted(cells.items(), key=lambda kv: (kv[0][1], kv[0][0] != CONTROL,
                                                                   methods.index(kv[0][0]))):
        entry = {"mean_dice": cell.dice.mean, "seed_spread": cell.dice.std, "draws": [list(d) for d in cell.draws],
                 "per_seed": list(cell.dice.per_draw),
                 "classes": {c: s.spread.mean if s.spread else None for c, s in cell.class_dice.items()}}
        for reference, comparison in cell.comparisons.items():
            if reference == "Random" and method == CONTROL:
                continue
            entry[f"vs {reference}"] = comparison.to_dict()
        out[f"{method} k={k}"] = entry
    return out


def print_table(summary: dict) -> None:
    from nnunetv2_glrp.reproduction.statistics import difference_text

    print(f"\n{'run':<18}{'mean Dice':>10}{'spread':>8}{'RV':>7}{'MYO':>7}{'LV':>7}  {'per seed':<24}"
          f"{'vs nnU-Net [95% CI]':>26}{'Wilcoxon p':>12}{'vs Random [95% CI]':>26}{'Wilcoxon p':>12}")
    for name, e in summary.items():
        c = e["classes"]
        seeds = " ".join(f"{v:.3f}" for v in e["per_seed"])
        spread = "-" if e["seed_spread"] is None else f"{e['seed_spread']:.3f}"
        columns = ""
        for key in (f"vs {CONTROL}", "vs Random"):
            diff = e.get(key)
            dtext = difference_text(diff) if diff else "-"
            ptext = f"{diff['p_value']:.3g}" if diff else "-"
            columns += f"{dtext:>26}{ptext:>12}"
        print(f"{name:<18}{e['mean_dice']:>10.3f}{spread:>8}"
              + "".join(f"{c[k]:>7.3f}" if c.get(k) is not None else f"{'-':>7}" for k in CLASSES)
              + f"  {seeds:<24}{columns}")


def main(argv: list[str] | None = None) -> int:
    from nnunetv2_glrp.registry import PRETRAINING_SEEDS  # no nnU-Net import: the environment is set below

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("bench_output") / "few_label_run",
                        help="working folder (phantom, nnU-Net folders, engine outputs); reused by a rerun")
    parser.add_argument("-d", "--dataset", type=int, default=911)
    parser.add_argument("-c", "--configuration", default=None,
                        help="with --no-phantom: the prepared configuration to train (default: the --plans overlay's)")
    parser.add_argument("--no-phantom", action="store_true",
                        help="use dataset -d as it is in the nnU-Net folders of the environment (or of --root when "
                        "they are unset); nothing is generated or converted")
    parser.add_argument("--patients", type=int, default=40)
    parser.add_argument("--split", default="6:1:3", help="train:val:test patients of the converted phantom")
    parser.add_argument("--phantom-seed", type=int, default=0)
    parser.add_argument("--plans", default="nnunet_cpu", help="plans overlay (CPU configuration)")
    parser.add_argument("--budget", default="cpu", help="trainer budget (cpu; full = no suffix)")
    parser.add_argument("--recipe", default="nnunet", help="fine-tuning recipe of the plugin's rows (nnunet, decwarm, ...)")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 6])
    parser.add_argument("-f", "--fold", type=int, default=0)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=[CONTROL, "Random", "GLRP"])
    parser.add_argument("--pretrained-encoder", type=Path, default=None,
                        help="pretrained_encoder.pth to fine-tune the pretrained rows from (default: the budget's "
                        "pretraining preset, pretrained by the first trainer that needs it)")
    parser.add_argument("--pretraining-seeds", default="shared", choices=PRETRAINING_SEEDS,
                        help="shared: one pretraining for every seed (default); per-seed: seed S's pretrained rows "
                        "from a pretraining of seed S")
    parser.add_argument("--extra-pools", nargs="+", default=[], metavar="DATASET",
                        help="converted datasets (names or ids) whose train/val frames the pretrained rows' "
                        "pretraining adds (engine folder suffix __pools_<names>)")
    parser.add_argument("--pretraining-epochs", type=int, default=None, metavar="N",
                        help="epochs of the pretrained rows' pretraining instead of the preset's (engine folder "
                        "suffix __pretrain_<N>ep)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=Path("bench_output") / "few_label.json")
    args = parser.parse_args(argv)

    root = args.root.resolve()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        if not (args.no_phantom and name in os.environ):
            os.environ[name] = os.fspath(root / name)
    for key, value in (("nnUNet_n_proc_DA", "2"), ("nnUNet_def_n_proc", "1"), ("nnUNet_compile", "false")):
        os.environ.setdefault(key, value)
    from nnunetv2_glrp.atomic_files import atomic_write_json
    from nnunetv2_glrp.environment import configure_nnunet_environment
    from nnunetv2_glrp.reproduction import engine
    from nnunetv2_glrp.reproduction.grid import plan_runs, resolve_methods

    configure_nnunet_environment(root)
    t0 = time.perf_counter()
    if args.no_phantom:
        configuration = args.configuration or args.plans
    else:
        from nnunetv2_glrp.preparation.phantom_dataset import prepare_phantom_dataset

        _, configuration = prepare_phantom_dataset(root / "phantom", args.dataset, args.patients, args.phantom_seed,
                                                   split=args.split, overlay=args.plans)
    # exactly the methods named (reproduce always adds Random; the budget study runs nnU-Net alone)
    methods = list(resolve_methods(args.methods, args.methods))
    if not any(len(resolve_methods([m], [m])) == 1 for m in args.methods):  # resolves to the reference alone
        methods = methods[1:]
    encoder = f"__{args.pretrained_encoder.resolve().parent.name}" if args.pretrained_encoder else ""
    if args.pretraining_seeds == "per-seed":
        encoder = "__per_seed_pretraining"
    setting = engine.make_setting(args.dataset, configuration, root / "engine", args.budget, args.recipe, args.device,
                                  pretrained_encoder=args.pretrained_encoder, pretraining_seeds=args.pretraining_seeds,
                                  extra_pools=args.extra_pools, pretraining_epochs=args.pretraining_epochs)
    if setting.extra_pools:
        encoder += f"__pools_{'+'.join(setting.extra_pools)}"
    if setting.pretraining_epochs is not None:
        encoder += f"__pretrain_{setting.pretraining_epochs}ep"
    out = root / f"engine_{args.budget}_{args.recipe}{encoder}"
    setting = replace(setting, out=out)
    runs = plan_runs(methods, args.k, (args.fold,), args.seeds)
    done = engine.run(setting, runs, args.k, (args.fold,), f"few-label benchmark: {', '.join(methods)}")
    summary = summarise(done.records, methods, args.k, done.labels)
    print_table(summary)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, {"engine_output": os.fspath(out), **engine.identity(setting), "k": args.k,
                                 "seeds": args.seeds, "methods": methods, "fold": args.fold,
                                 "phantom": None if args.no_phantom else {"patients": args.patients, "split": args.split,
                                                                          "seed": args.phantom_seed},
                                 "summary": summary, "total_seconds": time.perf_counter() - t0})
    print(f"written {args.out} (runs, predictions and logs under {out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
