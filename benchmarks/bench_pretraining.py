"""Pretraining throughput on the phantom with the small CPU plan, for every method in one run.

For each method (GLRP, GRP, LRP, GLRPLinear and the SimCLR, GCL, PCL baselines; ``--method`` picks some)
prints slices/s (end to end, data loading included, single-threaded loader so its cost is visible),
the model step time, the share of the step spent in the loss functions (their forward AND backward,
timed by cutting the graph at the projected embeddings, see ``pretraining.step``), the PSM time per
batch (in the data loader, or with ``--psm-location device`` in the step on ``--device``, timed apart from the
model step) and peak memory (max RSS;
torch.cuda.max_memory_allocated on CUDA), then one summary table of all methods.

    .venv/bin/python benchmarks/bench_pretraining.py [--root DIR] [--preset cpu full] [--iterations 10] [--method GCL PCL]
    .venv/bin/python benchmarks/bench_pretraining.py --epochs 4 --iterations 5 --workers 2 [--root DIR]

The second form times whole ``run_pretraining`` epochs (data loading in ``--workers`` augmentation
processes, as ``nnUNet_n_proc_DA``) instead of single steps: wall seconds per epoch, which include
what the run pays per epoch for its loader (worker start-up, batches prefetched and discarded).

``--preset`` (default ``cpu``; ``full`` is the paper's setting, batch 12 and the PSM at full box size) takes each
preset's batch size and PSM patch size unless ``--batch-size`` / ``--psm-patch-size`` override them; the summary
table gives, per preset and method, slices/s and the share of the single-process wall time spent in augmentation
(data loading without the PSM), the PSM, the model step without the loss functions, and the loss functions.

    .venv/bin/python benchmarks/bench_pretraining.py --root DIR --pool-patients 100 500 2000 [--pool-frames 10] [--workers 2]

The pool form (``benchmarks/pool_benchmark.py``) measures how the slice index, the sampler and the loader grow
with the pool, on a synthetic pool written straight in nnU-Net's preprocessed format (``benchmarks/synthetic_pool.py``:
no phantom pipeline, which would take hours for 2,000 patients), cached under ``--root``: index build time cold and
cached, peak memory of the main process and of the augmentation workers, loader slices/s; each N in its own process.

``-c paper_unet`` times the paper's 288 px plan instead of the small CPU plan (128 px); ``--autocast bf16|fp16``,
``--channels-last`` and ``--compile MODE`` set the config's precision switches, the network is set up as
``run_pretraining`` sets it up (channels_last weights, the fp16 gradient scaler, the compiled encoder forward), and
``--warmup`` steps are not timed; ``--out FILE`` appends each figure row as JSON. ``benchmarks/bench_gpu.sh`` runs
the GPU series of docs/benchmarks.md ("Pretraining on a GPU") with these.

Without --root a 10-patient phantom is made, converted and preprocessed in a temporary folder (about
a minute); with --root an existing GLRP_DATA-style folder holding Dataset901 prepared with ``-c`` is reused
(prepared there when it is missing).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing


def _prepare(root: Path, configuration: str) -> None:
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    if (root / "nnUNet_preprocessed" / "Dataset901_ACDC" / f"nnUNetPlans_{configuration}").is_dir():
        return
    if not (root / "nnUNet_raw" / "Dataset901_ACDC").is_dir():
        make_phantom(root / "phantom", n_patients=10, seed=0)
        convert_acdc(root / "phantom", 901, split="7:1:2", seed=0, overwrite=True)
    prepare_dataset(901, overlay=configuration, num_processes=1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", type=Path, default=None)
    ap.add_argument("--batch-size", type=int, default=None, help="default: the preset's")
    ap.add_argument("--preset", nargs="+", default=["cpu"], help="pretraining presets to time (cpu, full)")
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--method", nargs="+", default=None, help="methods to time (default: all)")
    ap.add_argument("--psm-patch-size", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--psm-location", choices=("loader", "device"), default="loader",
                    help="PSM in the data loader (default) or in the step on --device (config psm_location)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("-c", "--configuration", default="paper_unet_cpu",
                    help="plans overlay of the phantom (paper_unet_cpu: 128 px; paper_unet: the paper's 288 px)")
    ap.add_argument("--autocast", choices=("none", "bf16", "fp16"), default="none", help="config autocast")
    ap.add_argument("--channels-last", action="store_true", help="config channels_last")
    ap.add_argument("--compile", default="none", help="config compile (a torch.compile mode, e.g. default)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before the timed ones")
    ap.add_argument("--out", type=Path, default=None, help="append each figure row to this JSON-lines file")
    ap.add_argument("--epochs", type=int, default=0, help="time run_pretraining over this many epochs instead")
    ap.add_argument("--workers", type=int, default=0, help="augmentation processes with --epochs / --pool-patients")
    ap.add_argument("--pool-patients", type=int, nargs="+", default=None,
                    help="pool benchmark: synthetic pools of these numbers of patients (e.g. 100 500 2000)")
    ap.add_argument("--pool-frames", type=int, default=10, help="pool benchmark: frames (cases) per patient")
    ap.add_argument("--_pool-one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pool_patients:
        _pool(args)
        return

    root = (args.root or Path(tempfile.mkdtemp(prefix="glrp-bench-"))).resolve()
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ[name] = os.fspath(root / name)
    os.environ["nnUNet_n_proc_DA"] = str(args.workers if args.epochs else 0)
    import torch

    torch.set_num_threads(args.threads)
    from nnunetv2_glrp.environment import configure_nnunet_environment

    configure_nnunet_environment(root)
    _prepare(root, args.configuration)

    from nnunetv2_glrp.models import load_plans_context
    from nnunetv2_glrp.pretraining import METHODS

    ctx = load_plans_context(901, args.configuration)
    rows = []
    for preset in args.preset:
        for method in args.method or METHODS:
            row = (_time_epochs if args.epochs else _time_steps)(ctx, args, method, preset)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(row) + "\n")
            if not args.epochs:
                rows.append(row)
    if rows:
        print(f"\n{'preset':<7} {'method':<11} {'batch':>5} {'PSM px':>6} {'slices/s':>9} {'step-only slices/s':>19} "
              f"{'loss/step':>10} {'PSM ms/batch':>13} | share of wall: {'augment':>8} {'PSM':>6} {'model':>6} {'loss':>6}")
        for r in rows:
            print(f"{r['preset']:<7} {r['method']:<11} {r['batch']:>5} {str(r['psm_px']):>6} {r['slices_per_s']:>9.2f} "
                  f"{r['step_slices_per_s']:>19.2f} {100 * r['loss_share']:>9.2f}% {r['psm_ms']:>13.0f} |"
                  f"{'':>15} {100 * r['augment_share']:>7.1f}% {100 * r['psm_share']:>5.1f}% "
                  f"{100 * r['model_share']:>5.1f}% {100 * r['loss_wall_share']:>5.2f}%")


def _pool(args) -> None:
    """The pool benchmark (benchmarks/pool_benchmark.py): one process per size, or (--_pool-one) one size here."""
    import json

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import pool_benchmark

    root = (args.root or Path(tempfile.gettempdir()) / "glrp-pool-bench").resolve()
    root.mkdir(parents=True, exist_ok=True)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        os.environ.setdefault(name, os.fspath(root / name))
    batch = args.batch_size or 12
    if args._pool_one:
        row = pool_benchmark.measure_one(root, args.pool_patients[0], args.pool_frames, args.iterations, args.workers,
                                         batch)
        print("POOL_RESULT " + json.dumps(row))
        return
    pool_benchmark.run(root, args.pool_patients, args.pool_frames, args.iterations, args.workers, batch)


def _preset_overrides(args) -> dict:
    """The command-line overrides of a preset: batch size and PSM patch size (when given), precision switches."""
    out = {"autocast": args.autocast, "channels_last": args.channels_last, "compile": args.compile}
    if args.batch_size is not None:
        out["batch_size"] = args.batch_size
    if args.psm_patch_size is not None:
        out["psm_patch_size"] = args.psm_patch_size
    return out


def _time_steps(ctx, args, method: str, preset: str) -> dict:
    """Single-process steps of ``method`` (data loading inline); prints its figures and returns them."""
    import numpy as np
    import torch

    from nnunetv2_glrp.data import PretrainingSliceLoader
    from nnunetv2_glrp.pretraining import make_config
    from nnunetv2_glrp.pretraining.compiling import feature_function
    from nnunetv2_glrp.pretraining.inputs import build_models, pretraining_records, psm_function
    from nnunetv2_glrp.pretraining.loop import make_optimizer, make_scaler
    from nnunetv2_glrp.pretraining.methods import batch_sampler
    from nnunetv2_glrp.pretraining.step import StepTimer, training_step

    dev = torch.device(args.device)
    config = make_config(method, preset, psm_location=args.psm_location, **_preset_overrides(args))
    records, _ = pretraining_records(ctx)
    torch.manual_seed(0)
    np.random.seed(0)
    network, heads, stage = build_models(ctx, config)
    network.to(dev).train()
    heads.to(dev).train()
    if config.channels_last:  # as run_pretraining sets up the run
        network.to(memory_format=torch.channels_last)
    scaler = make_scaler(config, dev)
    features = feature_function(network, config.feature_tap, config.compile)
    psm_fn = psm_function(ctx, config, stage)
    step_psm = psm_fn if args.psm_location == "device" else None
    loader = PretrainingSliceLoader(records, config.batch_size, ctx.patch_size, seed=0,
                                    augmentation=config.augmentation, psm_fn=None if step_psm else psm_fn,
                                    sampler=batch_sampler(records, config))
    opt, _ = make_optimizer(network, heads, config, iterations=1)  # the run's SGD; its schedule is not stepped here
    def step(batch, timer=None):
        training_step(network, heads, batch, config, opt, dev, timer, step_psm, features=features, scaler=scaler)

    for _ in range(args.warmup):  # compiling, cuDNN autotuning, allocator growth: not timed
        step(loader.generate_train_batch())
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    timer = StepTimer(dev)
    data_s = 0.0
    t0 = time.perf_counter()
    for _ in range(args.iterations):
        t = time.perf_counter()
        batch = loader.generate_train_batch()
        data_s += time.perf_counter() - t
        step(batch, timer)
    total = time.perf_counter() - t0
    n = args.iterations
    print(f"\n== {method}, preset {preset}: plan {args.configuration}, patch {ctx.patch_size}, {len(records)} slices, method {config.method}, "
          f"batch {config.batch_size} slices ({2 * config.batch_size} views), local stage {stage}, device {dev}, "
          f"torch threads {args.threads}, PSM patch size {config.psm_patch_size or 'box size'} "
          f"computed in the {'step on ' + str(dev) if step_psm else 'data loader'}; autocast {config.autocast}, "
          f"channels_last {config.channels_last}, compile {config.compile}")
    print(f"throughput (data + step, one process): {n * config.batch_size / total:.2f} slices/s")
    print(f"model step: {timer.step / n * 1000:.0f} ms/iteration -> {n * config.batch_size / timer.step:.2f} slices/s "
          "with data loading in workers")
    print(f"loss functions (forward + backward, embeddings -> loss -> embedding gradients) share of the model step: "
          f"{100 * timer.loss_share:.2f}% ({timer.loss / n * 1000:.1f} ms = forward {timer.loss_forward / n * 1000:.1f} "
          f"+ backward {timer.loss_backward / n * 1000:.1f} ms per iteration)")
    print(f"data loading: {data_s / n * 1000:.0f} ms/batch; PSM {timer.psm / n * 1000:.0f} ms/batch "
          f"({100 * timer.psm / total:.1f}% of the single-process wall time)")
    print(f"peak RSS: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if dev.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated(dev) / 2**20:.0f} MiB")
    augment = data_s - (0.0 if step_psm else timer.psm)  # loader time without its PSM
    return {"method": method, "preset": preset, "configuration": args.configuration, "device": str(dev),
            "autocast": config.autocast, "channels_last": config.channels_last, "compile": config.compile,
            "psm_location": args.psm_location, "iterations": n, "step_ms": timer.step / n * 1000,
            "peak_cuda_mib": torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else None,
            "batch": config.batch_size, "psm_px": config.psm_patch_size or "box",
            "slices_per_s": n * config.batch_size / total,
            "step_slices_per_s": n * config.batch_size / timer.step, "loss_share": timer.loss_share,
            "psm_ms": timer.psm / n * 1000, "augment_share": augment / total, "psm_share": timer.psm / total,
            "model_share": (timer.step - timer.loss) / total, "loss_wall_share": timer.loss / total}


def _time_epochs(ctx, args, method: str, preset: str) -> dict:
    """Wall time of whole pretraining epochs (loader set-up and teardown included); prints and returns it."""
    import numpy as np

    from nnunetv2_glrp.pretraining import make_config, run_pretraining

    config = make_config(method, preset, epochs=args.epochs, iterations_per_epoch=args.iterations,
                         psm_location=args.psm_location, **_preset_overrides(args))
    ends = []
    folder = Path(tempfile.mkdtemp(prefix="glrp-bench-run-"))
    t0 = time.perf_counter()
    run_pretraining(ctx, config, folder, device=args.device, on_epoch_end=lambda e, s: ends.append(time.perf_counter()))
    total = time.perf_counter() - t0
    per_epoch = np.diff([t0] + ends)
    n_slices = args.epochs * args.iterations * config.batch_size
    print(f"run_pretraining {method}, preset {preset}: {args.epochs} epochs x {args.iterations} iterations, batch {config.batch_size}, "
          f"{args.workers} augmentation processes, torch threads {args.threads}")
    steady = per_epoch[1:] if len(per_epoch) > 1 else per_epoch  # the first epoch also starts the workers
    steady_slices_per_s = args.iterations * config.batch_size / steady.mean()
    print(f"wall {total:.1f} s ({n_slices / total:.2f} slices/s); per epoch "
          f"{' '.join(f'{s:.1f}' for s in per_epoch)} s (mean {per_epoch.mean():.2f} s); after the first epoch "
          f"{steady_slices_per_s:.2f} slices/s")
    return {"form": "epochs", "method": method, "preset": preset, "configuration": args.configuration,
            "device": args.device, "workers": args.workers, "autocast": config.autocast,
            "channels_last": config.channels_last, "compile": config.compile, "psm_location": args.psm_location,
            "batch": config.batch_size, "epochs": args.epochs, "iterations": args.iterations,
            "wall_s": total, "epoch_s": per_epoch.tolist(), "slices_per_s": n_slices / total,
            "steady_slices_per_s": steady_slices_per_s}


if __name__ == "__main__":
    main()
