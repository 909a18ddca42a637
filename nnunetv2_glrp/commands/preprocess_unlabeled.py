"""``nnUNetv2_glrp preprocess-unlabeled``: preprocess unlabeledTr/ like nnU-Net's labeled cases (by-hand workflow)."""

from __future__ import annotations

HELP = ("preprocess the unlabeled cine frames (unlabeledTr/) of a planned dataset with the preprocessing of a plans "
        "configuration, for pretraining (after nnUNetv2_plan_and_preprocess / nnUNetv2_preprocess by hand)")


def configure(parser) -> None:
    parser.add_argument("-d", "--dataset", required=True, help="dataset id or name (e.g. 901 or Dataset901_ACDC)")
    parser.add_argument("-c", "--configuration", required=True,
                        help="plans configuration whose preprocessing is applied (e.g. paper_cpu, glrp_paper, 2d)")
    parser.add_argument("-pl", "--plans_identifier", default="nnUNetPlans",
                        help="nnU-Net plans identifier (default: nnUNetPlans)")
    parser.add_argument("-np", "--num_processes", type=int, default=1, help="worker processes (default 1)")


def run(args) -> int:
    from nnunetv2_glrp.preparation.unlabeled import preprocess_unlabeled

    if args.num_processes < 1:
        raise ValueError(f"-np must be at least 1, got {args.num_processes}")
    output = preprocess_unlabeled(args.dataset, args.configuration, args.plans_identifier, args.num_processes)
    n_cases = len(list(output.glob("*.pkl")))
    print(f"{n_cases} unlabeled cases preprocessed with {args.plans_identifier}/{args.configuration} in {output}")
    return 0
