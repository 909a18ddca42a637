"""Arguments naming the fused models, shared by ``predict`` and ``determine-crf`` (nnU-Net's spellings)."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_configuration, add_dataset, add_device, add_plans_identifier


def add_model_arguments(parser) -> None:
    add_dataset(parser)
    add_configuration(parser, "nnU-Net configuration the trainers ran, e.g. nnunet_cpu")
    parser.add_argument("-f", "--fold", default="0", help="fold of every trainer (default: 0)")
    parser.add_argument("-tr", "--trainers", nargs="+", required=True,
                        help="one or more trainers; their probabilities are averaged (the first holds crf.json)")
    add_plans_identifier(parser)
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth",
                        help="checkpoint file name (default: checkpoint_final.pth)")
    parser.add_argument("--weights", nargs="+", type=float, default=None,
                        help="one positive weight per trainer for the fusion (default: plain mean)")
    add_device(parser)


def ensemble_from_args(args):
    from nnunetv2_glrp.postprocessing.trained_models import Ensemble

    return Ensemble(dataset=args.dataset, configuration=args.configuration, fold=args.fold,
                    trainers=tuple(args.trainers), plans=args.plans_identifier, checkpoint=args.checkpoint,
                    weights=tuple(args.weights) if args.weights else None)
