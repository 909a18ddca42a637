"""Arguments naming the fused models, shared by ``predict`` and ``determine-crf``."""

from __future__ import annotations


def add_model_arguments(parser) -> None:
    parser.add_argument("-d", "--dataset", required=True, help="dataset name or id")
    parser.add_argument("-c", "--configuration", required=True, help="nnU-Net configuration, e.g. glrp_paper")
    parser.add_argument("-f", "--fold", default="0", help="fold of every trainer (default 0)")
    parser.add_argument("-tr", "--trainers", nargs="+", required=True,
                        help="one or more trainers; their probabilities are averaged (the first holds crf.json)")
    parser.add_argument("-p", "--plans", default="nnUNetPlans", help="plans identifier (default nnUNetPlans)")
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name")
    parser.add_argument("--weights", nargs="+", type=float, default=None,
                        help="one positive weight per trainer for the fusion (default: plain mean)")
    parser.add_argument("-device", "--device", default="cpu", choices=("cpu", "cuda"), help="default cpu")


def ensemble_from_args(args):
    from nnunetv2_glrp.postprocessing.trained_models import Ensemble

    return Ensemble(dataset=args.dataset, configuration=args.configuration, fold=args.fold,
                    trainers=tuple(args.trainers), plans=args.plans, checkpoint=args.checkpoint,
                    weights=tuple(args.weights) if args.weights else None)
