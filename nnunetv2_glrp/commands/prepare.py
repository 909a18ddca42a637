"""``nnUNetv2_glrp prepare``: fingerprint, plan, plans overlay, preprocessing (labeled + unlabeled), splits."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import (add_dataset, add_num_processes, add_overlay, add_plans_identifier,
                                            refuse_overlay_as_plans_identifier)

HELP = ("prepare a converted dataset in one call: nnU-Net fingerprint (+ integrity check) and planning, "
        "a plans overlay, preprocessing of labeled and unlabeled images, patient-level splits")


def configure(parser) -> None:
    add_dataset(parser)
    add_overlay(parser)
    add_plans_identifier(parser, "-pl")
    add_num_processes(parser)
    parser.add_argument("--no_verify", action="store_true",
                        help="skip nnU-Net's dataset integrity check before fingerprint extraction (default: check)")


def run(args) -> int:
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    refuse_overlay_as_plans_identifier(args.plans_identifier)
    if args.num_processes < 1:
        raise ValueError(f"-np must be at least 1, got {args.num_processes}")
    configuration = prepare_dataset(args.dataset, overlay=args.overlay, num_processes=args.num_processes,
                                    plans_identifier=args.plans_identifier, verify=not args.no_verify)
    plans = "" if args.plans_identifier == "nnUNetPlans" else f" -p {args.plans_identifier}"
    print(f"dataset {args.dataset} prepared; train with: nnUNetv2_train {args.dataset} {configuration} FOLD "
          f"-tr TRAINER{plans} -device cpu")
    return 0
