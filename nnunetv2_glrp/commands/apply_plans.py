"""``nnUNetv2_glrp apply-plans``: add a plans overlay's configurations to nnU-Net's plans file."""

from __future__ import annotations

import argparse

from nnunetv2_glrp.commands.options import add_overlay, add_plans_identifier

HELP = ("add the configurations of a plans overlay (plans/*.json, or a bare name: nnunet_cpu, paper_unet_cpu, "
        "paper_unet) to a dataset's nnU-Net plans")


def configure(parser) -> None:
    parser.add_argument("-d", "--dataset", dest="dataset", default=None,
                        help="dataset name or id (e.g. 27 or Dataset027_ACDC); required")
    add_overlay(parser, default=None)
    add_plans_identifier(parser, "-pl")
    # the earlier form `apply-plans DATASET OVERLAY` still works
    parser.add_argument("legacy", nargs="*", help=argparse.SUPPRESS)


def run(args) -> int:
    from nnunetv2_glrp.preparation.overlays import apply_plans_overlay

    legacy = list(args.legacy)
    dataset = args.dataset if args.dataset is not None else (legacy.pop(0) if legacy else None)
    overlay = args.overlay if args.overlay is not None else (legacy.pop(0) if legacy else None)
    if dataset is None or overlay is None or legacy:
        raise ValueError("usage: nnUNetv2_glrp apply-plans -d DATASET --overlay OVERLAY [-p PLANS_IDENTIFIER]")
    names = apply_plans_overlay(dataset, overlay, args.plans_identifier)
    print(f"configurations in {args.plans_identifier}.json from {overlay}: {', '.join(names)}")
    return 0
