"""Linear probes of frozen encoders: does pretraining carry signal, before any fine-tuning?

For a prepared dataset (``nnUNetv2_glrp prepare``, or the ``--root`` of ``bench_few_label.py``) and one
or more encoders (``random``: nnU-Net's own initialisation, seeded; or ``pretrained_encoder.pth`` files
of pretraining runs on this dataset), with every encoder weight frozen:

* pixel probe: a multinomial logistic regression from the encoder's stage outputs (all stages from
  ``--from-stage`` down, bilinearly resized to 1/4 of the patch, standardised) to the label of each
  pixel (labels sampled at the same grid). Fitted on a class-balanced sample of pixels of the labeled
  slices of two thirds of the train/val patients, scored as Dice per class on every pixel of the
  labeled slices of the other third (patients never shared). It is what the decoder of fine-tuning
  starts from: features a linear map already separates are easier to fine-tune from.
* position probe: ridge regression (alpha chosen by 3-fold cross-validation over the fit patients, whole
  patients per fold: neighbouring slices of one stack would leak) from the global head's input
  (per channel mean, std and max of the bottleneck before its last norm, ``models/taps.py``) to the
  slice position n/m; R^2 on the held-out patients. The signal GRP pretraining is meant to put there.

Slices are the centre crop of each preprocessed slice at the configuration's patch size (zero padded),
with no augmentation. The split of patients and the pixel sample are drawn with ``--seed``.

    .venv/bin/python benchmarks/bench_linear_probe.py --root /tmp/bench/fl -d 911 -c nnunet_cpu \\
        --encoders random /path/to/pretrained_encoder.pth [--random-seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))

CLASSES = ("RV", "MYO", "LV")


def _centre(a: np.ndarray, size) -> np.ndarray:
    """Centre crop / zero pad of the last two axes of ``a`` to ``size``."""
    out = np.zeros(a.shape[:-2] + tuple(size), a.dtype)
    src, dst = [], []
    for n, s in zip(a.shape[-2:], size):
        c = min(n, s)
        src.append(slice((n - c) // 2, (n - c) // 2 + c))
        dst.append(slice((s - c) // 2, (s - c) // 2 + c))
    out[(..., *dst)] = a[(..., *src)]
    return out


def labeled_slices(ctx, split: dict, patients: set[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(images [S, C, H, W], labels [S, H, W], positions [S], patient ids [S]) of every labeled slice of
    ``patients``."""
    from nnunetv2_glrp.data.positions import slice_positions
    from nnunetv2_glrp.data.reading import _dataset

    ds = _dataset(os.fspath(ctx.data_folder))
    images, labels, positions, owners = [], [], [], []
    for case in sorted(split["cases"]):
        info = split["cases"][case]
        if info["patient"] not in patients or info.get("kind", "labeled") != "labeled":
            continue
        data, seg, _, props = ds.load_case(case)
        data, seg = np.asarray(data, dtype=np.float32), np.asarray(seg)
        pos = slice_positions(props, data.shape[1], case)
        for z in range(data.shape[1]):
            images.append(_centre(data[:, z], ctx.patch_size))
            labels.append(_centre(seg[0, z], ctx.patch_size))
            positions.append(pos[z][0] / pos[z][1])
            owners.append(info["patient"])
    if not images:
        raise ValueError(f"no labeled slices for patients {sorted(patients)} in {ctx.data_folder}")
    return np.stack(images), np.stack(labels).astype(np.int64), np.array(positions), np.array(owners)


def encoder(ctx, spec: str, seed: int):
    """nnU-Net's network for ``ctx``, initialised with ``seed`` and, unless ``spec`` is "random", its
    encoder loaded from the ``pretrained_encoder.pth`` at ``spec``."""
    import torch

    from nnunetv2_glrp.finetuning.encoder_loading import load_encoder_state
    from nnunetv2_glrp.models import build_network

    torch.manual_seed(seed)
    network = build_network(ctx)
    if spec != "random":
        record = torch.load(spec, map_location="cpu", weights_only=False)
        load_encoder_state(network, record["encoder_state_dict"], source=spec)
    return network.eval()


def stage_features(network, images: np.ndarray, tap: str, batch: int = 32) -> list:
    import torch

    from nnunetv2_glrp.models import encoder_features

    chunks = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            chunks.append(encoder_features(network, torch.from_numpy(images[i:i + batch]), tap))
    return [torch.cat([c[s] for c in chunks]) for s in range(len(chunks[0]))]


def pixel_table(feats: list, labels: np.ndarray, from_stage: int) -> tuple[np.ndarray, np.ndarray]:
    """(pixel features [P, F], pixel labels [P]) on the 1/4 grid of the patch."""
    import torch
    import torch.nn.functional as F

    size = tuple(s // 4 for s in labels.shape[-2:])
    up = [F.interpolate(f, size=size, mode="bilinear", align_corners=False) for f in feats[from_stage:]]
    x = torch.cat(up, 1).permute(0, 2, 3, 1).reshape(-1, sum(u.shape[1] for u in up)).numpy()
    return x, labels[:, 2::4, 2::4].reshape(-1)


def pixel_probe(fit: tuple, test: tuple, rng: np.random.Generator, per_class: int) -> dict[str, float]:
    from sklearn.linear_model import LogisticRegression

    (xf, yf), (xt, yt) = fit, test
    classes = np.unique(yf)
    idx = np.concatenate([rng.choice(np.flatnonzero(yf == c), min(per_class, int((yf == c).sum())), replace=False)
                          for c in classes])
    mu, sd = xf[idx].mean(0), xf[idx].std(0) + 1e-6
    clf = LogisticRegression(max_iter=500, C=0.1).fit((xf[idx] - mu) / sd, yf[idx])
    pred = clf.predict((xt - mu) / sd)
    out = {}
    for c, name in enumerate(CLASSES, start=1):
        denom = (pred == c).sum() + (yt == c).sum()
        out[name] = float(2 * ((pred == c) & (yt == c)).sum() / denom) if denom else float("nan")
    out["mean"] = float(np.nanmean([out[n] for n in CLASSES]))
    return out


def position_probe(fit: tuple, test: tuple, groups: np.ndarray) -> float:
    """R^2 of the slice position predicted from the pooled bottleneck of held-out patients."""
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import GroupKFold

    from nnunetv2_glrp.models.heads import pool_channel_statistics

    (ff, pf), (ft, pt) = fit, test
    xf, xt = pool_channel_statistics(ff[-1]).numpy(), pool_channel_statistics(ft[-1]).numpy()
    mu, sd = xf.mean(0), xf.std(0) + 1e-6
    folds = list(GroupKFold(n_splits=3).split(xf, pf, groups))
    ridge = RidgeCV(alphas=np.logspace(-1, 6, 15), cv=folds).fit((xf - mu) / sd, pf)
    pred = ridge.predict((xt - mu) / sd)
    return float(1 - ((pred - pt) ** 2).mean() / pt.var())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, help="folder holding nnUNet_raw / nnUNet_preprocessed "
                        "(default: the nnUNet_* environment variables)")
    parser.add_argument("-d", "--dataset", default="911")
    parser.add_argument("-c", "--configuration", default="nnunet_cpu")
    parser.add_argument("-p", "--plans", default="nnUNetPlans")
    parser.add_argument("--encoders", nargs="+", default=["random"])
    parser.add_argument("--random-seeds", nargs="+", type=int, default=[0],
                        help="initialisation seeds of the 'random' encoder (a pretrained encoder replaces the "
                             "whole encoder, so it is probed once, with the first seed)")
    parser.add_argument("--from-stage", type=int, default=2)
    parser.add_argument("--pixels-per-class", type=int, default=3000)
    parser.add_argument("--probes", nargs="+", choices=("pixel", "position"), default=["pixel", "position"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.root is not None:
        for name in ("nnUNet_raw", "nnUNet_preprocessed"):
            os.environ[name] = os.fspath(args.root / name)
        os.environ.setdefault("nnUNet_results", os.fspath(args.root / "results_seed0"))
    import torch

    from nnunetv2_glrp.dataset_split import read_split
    from nnunetv2_glrp.models import load_plans_context

    torch.set_num_threads(max(os.cpu_count() or 1, 1))
    ctx = load_plans_context(args.dataset, args.configuration, args.plans)
    split = read_split(ctx.preprocessed_dataset_folder)
    rng = np.random.default_rng(args.seed)
    pool = sorted(set(split["train"]) | set(split["val"]))
    order = rng.permutation(len(pool))
    fit_patients = {pool[i] for i in order[: 2 * len(pool) // 3]}
    data = {"fit": labeled_slices(ctx, split, fit_patients),
            "test": labeled_slices(ctx, split, set(pool) - fit_patients)}
    print(f"{ctx.dataset_name} {args.configuration}: {len(data['fit'][0])} fit slices "
          f"({len(fit_patients)} patients), {len(data['test'][0])} held-out slices "
          f"({len(pool) - len(fit_patients)} patients); seed {args.seed}")
    print(f"{'encoder':<40} {'init':>4} {'RV':>6} {'MYO':>6} {'LV':>6} {'mean':>6} {'position R2':>12}")
    for spec in args.encoders:
        for init_seed in args.random_seeds if spec == "random" else args.random_seeds[:1]:
            network = encoder(ctx, spec, init_seed)
            dice, r2 = dict.fromkeys((*CLASSES, "mean"), float("nan")), float("nan")
            if "pixel" in args.probes:
                out = {g: stage_features(network, data[g][0], "output") for g in data}
                dice = pixel_probe(*(pixel_table(out[g], data[g][1], args.from_stage) for g in ("fit", "test")),
                                   rng=np.random.default_rng(args.seed), per_class=args.pixels_per_class)
            if "position" in args.probes:
                pre = {g: stage_features(network, data[g][0], "pre-norm") for g in data}
                r2 = position_probe((pre["fit"], data["fit"][2]), (pre["test"], data["test"][2]), data["fit"][3])
            label = spec if spec == "random" else Path(spec).parent.name
            print(f"{label:<40} {init_seed:>4} " + " ".join(f"{dice[n]:6.3f}" for n in (*CLASSES, "mean"))
                  + f" {r2:12.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
