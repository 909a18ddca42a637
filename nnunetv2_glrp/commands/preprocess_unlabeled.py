"""``nnUNetv2_glrp preprocess-unlabeled``: preprocess unlabeledTr/ like nnU-Net's labeled cases (by-hand workflow)."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_configuration, add_dataset, add_num_processes, add_plans_identifier

HELP = ("preprocess the unlabeled cine frames (unlabeledTr/) of a planned dataset with the preprocessing of a plans "
        "configuration, for pretraining (after nnUNetv2_plan_and_preprocess / nnUNetv2_preprocess by hand)")


def configure(parser) -> None:
    add_dataset(parser)
    add_configuration(parser, "plans configuration whose preprocessing is applied (e.g. nnunet_cpu, paper_unet_cpu, paper_unet, 2d)")
    add_plans_identifier(parser, "-pl")
    add_num_processes(parser)


def run(args) -> int:
    from nnunetv2_glrp.preparation.unlabeled import preprocess_unlabeled

    if args.num_processes < 1:
        raise ValueError(f"-np must be at least 1, got {args.num_processes}")
    output = preprocess_unlabeled(args.dataset, args.configuration, args.plans_identifier, args.num_processes)
    n_cases = len(list(output.glob("*.pkl")))
    print(f"{n_cases} unlabeled cases preprocessed with {args.plans_identifier}/{args.configuration} in {output}")
    return 0
