"""``nnUNetv2_glrp crf``: the CRF on nnU-Net probability exports made elsewhere."""

from __future__ import annotations

HELP = "apply the CRF to nnU-Net probability exports (CASE.npz + CASE.pkl) and write label maps"


def configure(parser) -> None:
    parser.add_argument("-i", "--input", required=True, help="folder of CASE.npz + CASE.pkl (--save_probabilities)")
    parser.add_argument("-images", "--images", required=True, help="folder of the images CASE_0000.nii.gz")
    parser.add_argument("-o", "--out", dest="out", required=True, help="output folder")
    parser.add_argument("--setting", default=None,
                        help="crf.json written by determine-crf (or a bare setting); default: the paper's CRF")


def run(args) -> int:
    from nnunetv2_glrp.postprocessing.crf import PAPER_SETTING
    from nnunetv2_glrp.postprocessing.prediction import crf_folder
    from nnunetv2_glrp.postprocessing.registration import load_setting

    setting = load_setting(args.setting) if args.setting else PAPER_SETTING
    written = crf_folder(args.input, args.images, args.out, setting)
    print(f"{len(written)} cases written to {args.out} ({setting.name})")
    return 0
