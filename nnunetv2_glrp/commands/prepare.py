"""``nnUNetv2_glrp prepare``: fingerprint, plan, plans overlay, preprocessing (labeled + unlabeled), splits."""

from __future__ import annotations

HELP = ("prepare a converted dataset in one call: nnU-Net fingerprint (+ integrity check) and planning, "
        "a plans overlay, preprocessing of labeled and unlabeled images, patient-level splits")


def configure(parser) -> None:
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (e.g. 901)")
    parser.add_argument("-p", "--plans", default="nnunet_cpu",
                        help="plans overlay: nnunet_cpu (default: nnU-Net's 2d design at CPU size), paper_cpu "
                             "(the paper's BatchNorm/ReLU network at CPU size), paper, or a path to an overlay JSON")
    parser.add_argument("-np", "--num_processes", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("-pl", "--plans_identifier", default="nnUNetPlans",
                        help="nnU-Net plans identifier (default: nnUNetPlans)")
    parser.add_argument("--no_verify", action="store_true",
                        help="skip nnU-Net's dataset integrity check before fingerprint extraction")


def run(args) -> int:
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    configuration = prepare_dataset(args.dataset, overlay=args.plans, num_processes=args.num_processes,
                                    plans_identifier=args.plans_identifier, verify=not args.no_verify)
    print(f"dataset {args.dataset} prepared; train with: nnUNetv2_train {args.dataset} {configuration} FOLD "
          "-tr TRAINER -device cpu")
    return 0
