"""Budget study: test Dice, seed spread and validation curves of the few-label benchmark at several budgets.

Reads what ``bench_few_label.py`` left under ``--root`` (one engine output folder per budget,
``engine_<budget>_<recipe>[__<encoder>]/``, with its run records) and each trained model's own nnU-Net log (the
``logging`` entry of ``checkpoint_final.pth``: per epoch the training and validation loss and the validation
pseudo Dice with its EMA, the value nnU-Net uses to pick ``checkpoint_best``). Prints and writes, per budget,
method and k: iterations, mean test Dice over the seeds, the spread across seeds (std of the per-seed
means), per class, per seed, and, for methods other than nnU-Net, the paired difference to nnU-Net with its 95 %
interval (seeds and cases resampled) and, for methods other than Random, to Random of the same folder (the same
recipe from a random initialisation, on the seeds both have: what the pretrained encoder adds), the clinical
indices of ``reproduce``'s table (LV EF error and bias, LV EDV and mass errors), the mean training wall time of
the runs that trained (with the pretraining where a run made it: the first GLRP run of a folder; a resumed
training scaled to a whole one, ``estimate.whole_training_seconds``); and one PNG per k with the validation
curves (EMA pseudo Dice and validation loss against the iteration) of every run, one colour per budget.
With several ``--recipe`` (e.g. ``--recipe nnunet semi``) the rows of a recipe other than the first are named
``<method>_<recipe>`` (``GLRP_semi``), each compared with nnU-Net's runs recorded in its own engine folder (the same
draws; nnU-Net's trainer does not depend on the recipe, so its row is listed once, from the first recipe).
``--seeds 0 1 2`` keeps only those draws (rows, intervals and curves): a figure quoted while a study was under way
can be printed again after later draws have been added to the same folders.

    .venv/bin/python benchmarks/budget_study.py --root /data/bench --budgets cpu cpu500 cpulong cpu2000 cpulongsgd \
        --out docs/figures/budget_study   # writes budget_study.md, budget_study.json, budget_study_k<K>.png

Nothing is trained here; budgets or runs that are not finished yet are left out (and listed).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))

CONTROL = "nnU-Net"
RANDOM = "Random"  # the same recipe from a random initialisation: what a pretrained encoder must beat
CLASSES = ("RV", "MYO", "LV")


def training_curves(model_folder: Path) -> dict | None:
    """{"train_loss", "val_loss", "pseudo_dice", "ema_dice"}: per-epoch lists of a finished nnU-Net training
    (``checkpoint_final.pth``), or None when it has not finished."""
    import torch

    final = Path(model_folder) / "checkpoint_final.pth"
    if not final.is_file():
        return None
    log = torch.load(final, map_location="cpu", weights_only=False)["logging"]
    return {"train_loss": [float(v) for v in log["train_losses"]], "val_loss": [float(v) for v in log["val_losses"]],
            "pseudo_dice": [float(v) for v in log["mean_fg_dice"]], "ema_dice": [float(v) for v in log["ema_fg_dice"]]}


def budget_rows(folder: Path, budget: str, ks, methods, suffix: str = "",
                with_control: bool = True, seeds=None) -> tuple[list[dict], list[dict]]:
    """(table rows, curve entries) of one engine output folder; ``suffix`` is appended to the method names of the
    rows and curves (``"_semi"``), nnU-Net's own row and curves are left out unless ``with_control``; ``seeds``:
    only the runs of these draws (None: every draw the folder holds, so a figure quoted while a study was under
    way can be printed again once later draws exist)."""
    from nnunetv2_glrp.finetuning.recipes import BUDGETS, ResolvedSchedule, RECIPES, recipe_for_budget
    from nnunetv2_glrp.reproduction import results
    from nnunetv2_glrp.reproduction.cells import table_cells
    from nnunetv2_glrp.reproduction.clinical_table import clinical_cells
    from nnunetv2_glrp.reproduction.estimate import whole_training_seconds

    keep = None if seeds is None else set(seeds)
    records = [r for r in results.read_records(folder) if keep is None or r.run.seed in keep]
    if not records:
        return [], []
    b = BUDGETS[budget]
    recipe = recipe_for_budget(RECIPES["nnunet"], b)
    schedule = ResolvedSchedule.of(recipe, b)
    iterations = schedule.num_epochs * schedule.iterations_per_epoch
    present = [m for m in methods if any(r.method == m for r in records)]
    cells = table_cells(records, present, ks, list(CLASSES), references=(CONTROL, RANDOM))
    rows = []
    for (method, k), cell in sorted(cells.items(), key=lambda kv: (kv[0][1], present.index(kv[0][0]))):
        if method == CONTROL and not with_control:
            continue
        row = {"budget": budget, "iterations": iterations, "optimizer": f"{recipe.optimizer} {recipe.initial_lr:g}",
               "method": method if method == CONTROL else method + suffix, "k": k, "seeds": [d[1] for d in cell.draws], "mean_dice": cell.dice.mean,
               "seed_spread": cell.dice.std, "per_seed": list(cell.dice.per_draw),
               "classes": {c: s.spread.mean if s.spread else None for c, s in cell.class_dice.items()}}
        # a resumed training counts as a whole one; None: the run reused a training another run made
        trained = [whole_training_seconds(r) for r in records if r.method == method and r.run.k == k]
        trained = [t for t in trained if t]
        row["train_minutes"] = sum(trained) / len(trained) / 60 if trained else None
        if CONTROL in cell.comparisons:
            row["vs_nnunet"] = cell.comparisons[CONTROL].to_dict()
        if RANDOM in cell.comparisons and method != CONTROL:  # same folder, so same recipe, on the common seeds
            row["vs_random"] = {**cell.comparisons[RANDOM].to_dict(),
                                "seeds": [d[1] for d in cell.compared_draws[RANDOM]]}
        row["clinical"] = {head: None if v is None else {"mean": v.mean, "std": v.std, "n_draws": v.n_draws}
                           for head, v in clinical_cells(records, [method], [k])[(method, k)].items()}
        rows.append(row)
    curves = []
    for record in records:  # the curves of the methods asked for only, as the rows
        if record.method not in present or (record.method == CONTROL and not with_control):
            continue
        for trainer, model in zip(record.trainers, record.raw.get("model_folders", [])):
            c = training_curves(Path(model))
            if c is not None:
                curves.append({"budget": budget, "k": record.run.k, "seed": record.run.seed,
                               "trainer": trainer, "iterations_per_epoch": schedule.iterations_per_epoch, **c,
                               "method": record.method if record.method == CONTROL else record.method + suffix})
    return rows, curves


def markdown(rows: list[dict]) -> str:
    from nnunetv2_glrp.reproduction.statistics import difference_text

    lines = ["| budget | iterations | optimizer | run | mean Dice | seed spread | RV | MYO | LV | per seed | "
             "vs nnU-Net [95 % CI] | vs Random, same recipe [95 % CI] (seeds) | training (min) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        spread = "-" if r["seed_spread"] is None else f"{r['seed_spread']:.3f}"
        diff, rdiff = r.get("vs_nnunet"), r.get("vs_random")
        dtext = difference_text(diff) if diff else ""
        rtext = f"{difference_text(rdiff)} ({' '.join(map(str, rdiff['seeds']))})" if rdiff else ""
        seeds = " ".join(f"{v:.3f}" for v in r["per_seed"])
        classes = " | ".join(f"{r['classes'][c]:.3f}" if r["classes"].get(c) is not None else "-" for c in CLASSES)
        lines.append(f"| {r['budget']} | {r['iterations']} | {r['optimizer']} | {r['method']} k={r['k']} | "
                     f"{r['mean_dice']:.3f} | {spread} | {classes} | {seeds} | {dtext} | {rtext} | "
                     f"{'-' if r['train_minutes'] is None else round(r['train_minutes'])} |")
    heads = list(rows[0]["clinical"]) if rows else []
    lines += ["", "Clinical indices (``reproduce``'s columns): mean over the seeds that have them (their number), "
              "prediction - reference per test patient with an ED and an ES case:", "",
              "| budget | run | " + " | ".join(heads) + " |", "|---|---|" + "---|" * len(heads)]
    for r in rows:
        cells = " | ".join("-" if r["clinical"][h] is None else
                           f"{r['clinical'][h]['mean']:.1f} ({r['clinical'][h]['n_draws']})" for h in heads)
        lines.append(f"| {r['budget']} | {r['method']} k={r['k']} | {cells} |")
    return "\n".join(lines) + "\n"


def plot_curves(curves: list[dict], k: int, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [c for c in curves if c["k"] == k]
    if not mine:
        return None
    budgets = list(dict.fromkeys(c["budget"] for c in mine))
    by = "budget" if len(budgets) > 1 else "seed"  # one budget: one colour per seed (the draw pairs the methods)
    keys = list(dict.fromkeys(c[by] for c in mine))
    colours = dict(zip(keys, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    others = [m for m in dict.fromkeys(c["method"] for c in mine) if m != CONTROL]
    styles = {CONTROL: "-", **{m: ("--", ":", "-.")[i % 3] for i, m in enumerate(others)}}
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 8), sharex=True)
    for c in mine:
        x = [(e + 1) * c["iterations_per_epoch"] for e in range(len(c["ema_dice"]))]
        style = styles[c["method"]]
        label = f"{c['budget']} {c['method']} seed {c['seed']}"
        top.plot(x, c["ema_dice"], style, color=colours[c[by]], label=label, lw=1.2)
        bottom.plot(x, c["val_loss"], style, color=colours[c[by]], lw=1.2)
    top.set_ylabel("validation pseudo Dice (EMA)")
    bottom.set_ylabel("validation loss (Dice + CE)")
    bottom.set_xlabel("training iteration")
    legend = "; ".join(["solid: nnU-Net from scratch"] + [f"{styles[m]} {m}" for m in others])
    top.set_title(f"k = {k}: validation curves, colour per {by} ({legend})")
    top.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True, help="the --root of bench_few_label.py")
    parser.add_argument("--budgets", nargs="+", default=["cpu", "cpu500", "cpulong", "cpu2000", "cpulongsgd"])
    parser.add_argument("--recipe", nargs="+", default=["nnunet"], help="fine-tuning recipe(s) of the engine "
                        "folders to read; rows of every recipe but the first are named <method>_<recipe>")
    parser.add_argument("--encoder-suffix", default="", help="'__<encoder folder>' of runs with --pretrained-encoder; "
                        "'__per_seed_pretraining' of runs with --pretraining-seeds per-seed")
    parser.add_argument("--k", type=int, nargs="+", default=[2, 6])
    parser.add_argument("--methods", nargs="+", default=[CONTROL, "Random", "GLRP"])
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="only these draws (default: every draw of each folder)")
    parser.add_argument("--out", type=Path, default=None, help="folder for budget_study.{md,json} and the PNGs "
                        "(default: ROOT/budget_study)")
    args = parser.parse_args(argv)
    out = args.out or args.root / "budget_study"
    out.mkdir(parents=True, exist_ok=True)
    rows, curves, missing = [], [], []
    for budget in args.budgets:
        for i, recipe in enumerate(args.recipe):
            folder = args.root / f"engine_{budget}_{recipe}{args.encoder_suffix}"
            suffix = "" if i == 0 else f"_{recipe}"
            r, c = (budget_rows(folder, budget, args.k, args.methods, suffix, i == 0, args.seeds)
                    if folder.is_dir() else ([], []))
            if not r:
                missing.append(budget + suffix)
            rows += r
            curves += c
    rows.sort(key=lambda r: (args.budgets.index(r["budget"]), r["k"]))  # stable: methods keep their order
    text = markdown(rows)
    print(text)
    if missing:
        print(f"no finished run yet for budget(s): {', '.join(missing)}")
    from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text

    atomic_write_text(out / "budget_study.md", text)
    atomic_write_json(out / "budget_study.json", {"rows": rows, "curves": curves, "missing": missing})
    for k in args.k:
        png = plot_curves(curves, k, out / f"budget_study_k{k}.png")
        if png:
            print(f"written {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
