"""Fine-tuning cost per iteration: a GLRP trainer next to nnU-Net's own nnUNetTrainer, same plan.

Both trainers are built through nnU-Net's lookup (``nnUNet_extTrainer``), set up with their own
``on_train_start`` (pretrained encoder loaded for the GLRP one) and then run interleaved rounds of
training iterations (data loading + ``train_step``) so that load from other processes hits both
alike. Prints the median seconds per iteration of each and their ratio (expected ~1.0: GLRP only
changes the initialisation, the k-patient subset and the lr warm-up, not the step). With
``--trainer RandomInitTrainer_k6_semi_tiny --baseline RandomInitTrainer_k6_tiny`` it gives the cost of the ``_semi``
recipe's unlabeled passes (target <= ~3x; docs/benchmarks.md); its unlabeled batches come from a background thread.

    .venv/bin/python benchmarks/bench_finetuning.py [--root DIR] [--trainer GLRPTrainer_k6_tiny]
        [--iterations 8] [--rounds 3] [--out bench_output/finetuning.json]

``GLRPTrainer_k6_tiny`` (a test-only trainer of ``tests/tiny_trainers``) has the same recipe (loss, optimizer, augmentation, batch) as
``GLRPTrainer_k6``; only the number of epochs and the pretraining budget differ, and neither enters
the time of one iteration. Without --root a 10-patient phantom is made, converted and preprocessed
(paper_unet_cpu) in a temporary folder (about a minute, plus a tiny pretraining); with --root an existing
GLRP_DATA-style folder (nnUNet_raw/_preprocessed/_results inside) is reused. Data augmentation runs
in the main thread (nnUNet_n_proc_DA=0) unless the environment sets it, so loading is timed too.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.fspath(Path(__file__).resolve().parent.parent))


def _prepare(root: Path, dataset: int, configuration: str, seed: int) -> None:
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    make_phantom(root / "phantom", n_patients=10, seed=seed)
    convert_acdc(root / "phantom", dataset, split="7:1:2", seed=seed)
    prepare_dataset(dataset, overlay=configuration, num_processes=1)


def _start(name: str, dataset: int, configuration: str, device: str):
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset), configuration, 0, name, "nnUNetPlans", device=torch.device(device))
    trainer.disable_checkpointing = True
    trainer.on_train_start()
    trainer.on_train_epoch_start()
    return trainer


def _time_iterations(trainer, n: int, waits: list[float] | None = None) -> list[float]:
    """Seconds per iteration (loading + step, the device synchronised); a ``_semi`` trainer's time spent waiting
    for its unlabeled batch (the background thread not keeping up) is appended to ``waits``."""
    import torch

    stream = getattr(trainer, "_semi_stream", None)
    if stream is not None and waits is not None:
        stream.next = functools.partial(_timed, stream.next, waits)  # an instance attribute over the method
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            trainer.train_step(next(trainer.dataloader_train))
            if trainer.device.type == "cuda":
                torch.cuda.synchronize(trainer.device)
            times.append(time.perf_counter() - t0)
    finally:
        if stream is not None:
            vars(stream).pop("next", None)  # the class's method again
    return times


def _timed(call, into: list[float]):
    t0 = time.perf_counter()
    out = call()
    into.append(time.perf_counter() - t0)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="GLRP_DATA-style folder with the dataset already prepared")
    parser.add_argument("-d", "--dataset", type=int, default=901)
    parser.add_argument("-c", "--configuration", default="paper_unet_cpu")
    parser.add_argument("--trainer", default="GLRPTrainer_k6_tiny")
    parser.add_argument("--baseline", default="nnUNetTrainer")
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations per trainer and round")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations per trainer first")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="phantom/split seed when no --root is given")
    parser.add_argument("--out", type=Path, default=Path("bench_output") / "finetuning.json")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="glrp-bench-ft-") as tmp:
        root = args.root.resolve() if args.root else Path(tmp)
        for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
            os.environ[name] = os.fspath(root / name)
        os.environ.setdefault("nnUNet_n_proc_DA", "0")
        os.environ.setdefault("nnUNet_def_n_proc", "1")
        os.environ.setdefault("nnUNet_compile", "false")
        from nnunetv2_glrp.environment import configure_nnunet_environment

        configure_nnunet_environment(root)
        # the default GLRPTrainer_k6_tiny is a test-only trainer: make tests/tiny_trainers findable too
        tiny = Path(__file__).resolve().parent.parent / "tests" / "tiny_trainers"
        os.environ["nnUNet_extTrainer"] += os.pathsep + os.fspath(tiny)
        import torch

        torch.set_num_threads(args.threads)
        if args.root is None:
            t0 = time.perf_counter()
            _prepare(root, args.dataset, args.configuration, args.seed)
            print(f"phantom prepared in {time.perf_counter() - t0:.1f} s")

        names = [args.trainer, args.baseline]
        trainers = {}
        for name in names:
            t0 = time.perf_counter()
            trainers[name] = _start(name, args.dataset, args.configuration, args.device)
            print(f"{name}: set up in {time.perf_counter() - t0:.1f} s (pretraining included when missing)")
        for name in names:
            _time_iterations(trainers[name], args.warmup)
        times: dict[str, list[float]] = {name: [] for name in names}
        waits: dict[str, list[float]] = {name: [] for name in names}
        for r in range(args.rounds):
            for name in (names if r % 2 == 0 else names[::-1]):  # alternate who goes first
                times[name] += _time_iterations(trainers[name], args.iterations, waits[name])

        median = {name: statistics.median(t) for name, t in times.items()}
        ratio = median[args.trainer] / median[args.baseline]
        print(f"\n{'trainer':<28}{'batch':>6}{'median s/it':>13}{'mean s/it':>11}{'n':>5}")
        for name in names:
            print(f"{name:<28}{trainers[name].batch_size:>6}{median[name]:>13.3f}"
                  f"{statistics.fmean(times[name]):>11.3f}{len(times[name]):>5}")
        print(f"ratio {args.trainer} / {args.baseline}: {ratio:.3f}")
        unlabeled_wait = {name: statistics.median(w) for name, w in waits.items() if w}
        for name, wait in unlabeled_wait.items():
            print(f"{name}: median wait for the unlabeled batch {wait:.4f} s per iteration "
                  f"({wait / median[name]:.0%} of the iteration; 0 = the background thread keeps up)")
        record = {"trainers": names, "dataset": args.dataset, "configuration": args.configuration,
                  "device": args.device, "threads": args.threads, "rounds": args.rounds,
                  "iterations_per_round": args.iterations, "seconds_per_iteration": times,
                  "median_seconds_per_iteration": median, "ratio": ratio,
                  "median_unlabeled_wait_seconds": unlabeled_wait,
                  "batch_size": {n: trainers[n].batch_size for n in names},
                  "n_proc_DA": os.environ["nnUNet_n_proc_DA"], "seed": args.seed}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = args.out.with_name(args.out.name + ".tmp")
        tmp_out.write_text(json.dumps(record, indent=2))
        os.replace(tmp_out, args.out)
        print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
