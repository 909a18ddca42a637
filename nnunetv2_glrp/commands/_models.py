"""Arguments naming the fused models, shared by ``predict`` and ``determine-crf`` (nnU-Net's spellings),
and nnU-Net's inference settings of ``predict`` (``-step_size``, ``--disable_tta``, ``-npp``, ``-nps``)."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_configuration, add_dataset, add_device, add_plans_identifier


def add_model_arguments(parser, fold_help: str = "fold(s) of every trainer, as nnUNetv2_predict -f (default: 0)"
                        ) -> None:
    add_dataset(parser)
    add_configuration(parser, "nnU-Net configuration the trainers ran, e.g. nnunet_cpu")
    parser.add_argument("-f", "--fold", nargs="+", default=["0"], help=fold_help)
    parser.add_argument("-tr", "--trainers", nargs="+", required=True,
                        help="one or more trainers; their probabilities are averaged (the first holds crf.json)")
    add_plans_identifier(parser)
    parser.add_argument("-chk", "--checkpoint", default="checkpoint_final.pth",
                        help="checkpoint file name (default: checkpoint_final.pth)")
    parser.add_argument("--weights", nargs="+", type=float, default=None,
                        help="one positive weight per trainer for the fusion (default: plain mean)")
    add_device(parser)


def add_inference_arguments(parser) -> None:
    """nnUNetv2_predict's options, with its defaults."""
    parser.add_argument("-step_size", type=float, default=0.5,
                        help="sliding-window step as a fraction of the patch size (default: 0.5, as nnU-Net)")
    parser.add_argument("--disable_tta", action="store_true",
                        help="no test-time mirroring (faster, usually slightly worse; default: mirroring on)")
    parser.add_argument("-npp", type=int, default=3,
                        help="nnU-Net preprocessing worker processes (default: 3; -npp 0 -nps 0: none, predict "
                        "in this process)")
    parser.add_argument("-nps", type=int, default=3,
                        help="nnU-Net resampling worker processes (default: 3)")


def ensemble_from_args(args):
    from nnunetv2_glrp.postprocessing.trained_models import Ensemble

    return Ensemble(dataset=args.dataset, configuration=args.configuration, fold=tuple(args.fold),
                    trainers=tuple(args.trainers), plans=args.plans_identifier, checkpoint=args.checkpoint,
                    weights=tuple(args.weights) if args.weights else None)


def inference_from_args(args):
    from nnunetv2_glrp.postprocessing.trained_models import Inference

    return Inference(step_size=args.step_size, use_mirroring=not args.disable_tta, npp=args.npp, nps=args.nps)
