"""``nnUNetv2_glrp predict``: fused nnU-Net predictions, the CRF, NIfTI label maps."""

from __future__ import annotations

from nnunetv2_glrp.commands._models import (
    add_inference_arguments, add_model_arguments, ensemble_from_args, inference_from_args,
)
from nnunetv2_glrp.registry import CRF_MODES

HELP = ("predict with one or more trainers and folds (each trainer's folds averaged, then the trainers), apply the registered CRF, write label maps "
        "with the input geometry; resumes a killed run")


def configure(parser) -> None:
    parser.add_argument("-i", "--input", required=True, help="folder of images CASE_0000.nii.gz")
    parser.add_argument("-o", "--out", dest="out", required=True, help="output folder")
    add_model_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--crf", default="auto", choices=CRF_MODES,
                        help="auto: the setting determine-crf registered (default); on: the paper's always-on "
                        "CRF; off: argmax of the fused probabilities")
    parser.add_argument("--save_probabilities", action="store_true",
                        help="also write the fused probabilities as CASE.npz + CASE.pkl (nnU-Net's layout)")


def run(args) -> int:
    from nnunetv2_glrp.postprocessing.prediction import predict_folder

    written = predict_folder(args.input, args.out, ensemble_from_args(args), crf=args.crf,
                             save_probabilities=args.save_probabilities, device=args.device,
                             inference=inference_from_args(args))
    print(f"{len(written)} cases written to {args.out}")
    return 0
