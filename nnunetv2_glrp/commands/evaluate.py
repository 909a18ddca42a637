"""``nnUNetv2_glrp evaluate``: Dice, HD, HD95 and ASSD per class of a prediction folder."""

from __future__ import annotations

USES_NNUNET_FOLDERS = False  # the CLI creates no ./nnunet_data for this command
HELP = "evaluate predicted label maps against references (Dice, HD, HD95, ASSD per class; CSV + JSON)"


def configure(parser) -> None:
    parser.add_argument("pred_dir", help="folder of predicted label maps (.nii.gz)")
    parser.add_argument("ref_dir", help="folder of reference label maps with the same file names")
    parser.add_argument("-o", "--out", default=None, help="write metrics_per_case.csv and summary.json here "
                        "(default: PRED_DIR/evaluation)")


def run(args) -> int:
    from pathlib import Path

    from nnunetv2_glrp.evaluate import evaluate_folder, format_summary

    out = Path(args.out) if args.out else Path(args.pred_dir) / "evaluation"
    summary = evaluate_folder(args.pred_dir, args.ref_dir, out_dir=out)
    print(format_summary(summary))
    print(f"written: {out / 'metrics_per_case.csv'}, {out / 'summary.json'}")
    return 0
