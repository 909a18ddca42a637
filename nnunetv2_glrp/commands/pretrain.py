"""``nnUNetv2_glrp pretrain``: contrastive pretraining of the encoder, GLRP or a variant/baseline (cached, resumable)."""

from __future__ import annotations

import os

from nnunetv2_glrp.registry import PRETRAINING_METHODS
from nnunetv2_glrp.commands.options import add_configuration, add_dataset, add_device, add_plans_identifier, hidden_alias

HELP = "pretrain the U-Net encoder with GLRP (or GRP/LRP/GLRPLinear, or the SimCLR/GCL/PCL baselines); cached and resumable"
# The preset texts are written out rather than read from pretraining.config.PRESETS: importing it imports torch
# (~1.3 s), and `nnUNetv2_glrp -h` builds every subparser; tests/test_cli.py checks the numbers against PRESETS.
#: the pretraining methods, from the registry (pure data, no torch)
METHOD_CHOICES = tuple(PRETRAINING_METHODS)
#: the presets (pretraining.config.PRESETS, written out for the same reason; checked by a test)
PRESET_CHOICES = ("cpu", "full")
#: PretrainingConfig.autocast and pretraining.compiling.COMPILE_MODES, written out for the same reason (test_cli checks)
AUTOCAST_CHOICES = ("none", "bf16", "fp16")
COMPILE_CHOICES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
PRESET_HELP = ("cpu: 30 epochs x 50 iterations, batch 8; full: 200 epochs of one pass over the slices, batch 12 "
               "(the paper's pretraining; the preset of the full fine-tuning budget) (default: cpu)")


def configure(parser) -> None:
    add_dataset(parser)
    add_configuration(parser, "2D plans configuration (e.g. 2d, nnunet_cpu, paper_unet_cpu, paper_unet)")
    parser.add_argument("-m", "--method", dest="method", default="GLRP", choices=METHOD_CHOICES,
                        help="pretraining loss (default: GLRP)")
    add_plans_identifier(parser)
    parser.add_argument("--preset", default="cpu", choices=PRESET_CHOICES, help=PRESET_HELP)
    add_device(parser)
    parser.add_argument("--epochs", type=int, default=None, help="epochs (default: the preset's)")
    parser.add_argument("--iterations", type=int, default=None,
                        help="iterations per epoch (default: the preset's; full: one pass over the slices)")
    hidden_alias(parser, parser.add_argument("--batch_size", type=int, default=None,
                                             help="slices per batch, 2 views each (default: the preset's)"),
                 "--batch-size")
    parser.add_argument("--seed", type=int, default=0, help="pretraining seed (default: 0)")
    hidden_alias(parser, parser.add_argument(
        "--psm_location", default=None, choices=("auto", "loader", "device"),
        help="where the patch-SSIM matrix is computed: the data loader's workers, the training device (in the step), "
        "or auto = the device when it is a GPU (default: auto; not part of the cache key)"), "--psm-location")
    parser.add_argument("--autocast", default=None, choices=AUTOCAST_CHOICES,
                        help="mixed precision of the network's forward and backward: bf16 autocast (GPUs with bf16, "
                        "Ampere and later), fp16 autocast with a gradient scaler (older GPUs such as the V100; runs on "
                        "the CPU too, but slowly) or none (losses always in float32; part of the cache key when not "
                        "none) (default: none)")
    hidden_alias(parser, parser.add_argument(
        "--channels_last", action="store_true",
        help="run the encoder in the channels_last memory format (part of the cache key when set)"), "--channels-last")
    parser.add_argument("--compile", default=None, choices=COMPILE_CHOICES, metavar="MODE",
                        help=f"torch.compile the encoder's forward with this mode ({', '.join(COMPILE_CHOICES)}); "
                        "same encoder up to float rounding, not part of the cache key (default: none)")
    hidden_alias(parser, parser.add_argument(
        "--extra_pools", nargs="+", default=[], metavar="DATASET",
        help="other converted datasets (names or ids) whose train/val frames join the pretraining, preprocessed "
        "with this dataset's plans; their test patients are never used (default: none)"), "--extra-pools")
    parser.add_argument("-num_gpus", "--num_gpus", dest="num_gpus", type=int, default=1,
                        help="distributed pretraining on this many GPUs (processes spawned as nnU-Net's -num_gpus; with "
                        "-device cpu, gloo processes); --batch_size is the global batch, split evenly over them; a "
                        "torchrun launch is detected by itself (default: 1)")


def _overrides(args) -> dict:
    """The config fields given on the command line (absent ones keep the preset's value)."""
    return {k: v for k, v in (("epochs", args.epochs), ("iterations_per_epoch", args.iterations),
                              ("batch_size", args.batch_size), ("psm_location", args.psm_location),
                              ("autocast", args.autocast), ("channels_last", args.channels_last or None),
                              ("compile", args.compile)) if v is not None}


def run(args) -> int:
    from nnunetv2_glrp.pretraining import launch, make_config

    world = int(os.environ["WORLD_SIZE"]) if launch.launched_by_torchrun() else args.num_gpus
    batch = make_config(args.method, args.preset, args.seed, **_overrides(args)).batch_size
    if batch % world:
        raise SystemExit(f"error: the batch size {batch} (global) is not divisible by the {world} processes; pass "
                         f"--batch_size with a multiple of {world}")
    if launch.launched_by_torchrun():
        launch.from_environment(args.device)
        try:
            return _pretrain(args)
        finally:
            import torch.distributed as dist

            dist.destroy_process_group()
    if args.num_gpus > 1:
        launch.spawn(_pretrain, args.num_gpus, args.device, args)
        return 0
    return _pretrain(args)


def _pretrain(args) -> int:
    """One rank (or the single process) of ``pretrain``: every rank calls ``ensure_pretrained``, rank 0 prints."""
    import logging

    import torch.distributed as dist

    from nnunetv2_glrp.pretraining import ensure_pretrained, load_pretrained_encoder_state

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    main = not dist.is_initialized() or dist.get_rank() == 0
    if not main:
        logging.getLogger().setLevel(logging.WARNING)
    overrides = _overrides(args)
    path = ensure_pretrained(args.dataset, args.configuration, method=args.method,
                             plans_identifier=args.plans_identifier, preset=args.preset, device=args.device,
                             seed=args.seed, extra_pools=args.extra_pools, **overrides)
    if not main:
        return 0
    n = len(load_pretrained_encoder_state(path))
    print(f"pretrained encoder ({n} tensors): {path}")
    print(f"to fine-tune every k and fold from it: export GLRP_PRETRAINED_ENCODER={path}")
    return 0
