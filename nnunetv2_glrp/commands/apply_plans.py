"""``nnUNetv2_glrp apply-plans``: add a plans overlay's configurations to nnU-Net's plans file."""

from __future__ import annotations

HELP = "add the configurations of a plans overlay (plans/*.json, or a bare name: nnunet_cpu, paper_cpu, paper) to a dataset's nnU-Net plans"


def configure(parser) -> None:
    parser.add_argument("dataset", help="dataset id or name (e.g. 901 or Dataset901_ACDC)")
    parser.add_argument("plans_json", help="overlay JSON file, or the name of one in the repository's plans/ folder")
    parser.add_argument("-pl", "--plans_identifier", default="nnUNetPlans",
                        help="nnU-Net plans identifier (default: nnUNetPlans)")


def run(args) -> int:
    from nnunetv2_glrp.preparation.overlays import apply_plans_overlay

    names = apply_plans_overlay(args.dataset, args.plans_json, args.plans_identifier)
    print(f"configurations in {args.plans_identifier}.json from {args.plans_json}: {', '.join(names)}")
    return 0
