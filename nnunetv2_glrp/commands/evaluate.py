"""``nnUNetv2_glrp evaluate``: Dice, HD, HD95 and ASSD per class of a prediction folder, and the clinical
indices (LV/RV volumes and EF, LV mass) per patient."""

from __future__ import annotations

USES_NNUNET_FOLDERS = False  # the CLI creates no ./nnunet_data for this command
HELP = ("evaluate predicted label maps against references (Dice, HD, HD95, ASSD per class; volumes, EF and LV "
        "mass per patient; CSV + JSON + Bland-Altman plots)")


def configure(parser) -> None:
    parser.add_argument("pred_dir", help="folder of predicted label maps (.nii.gz)")
    parser.add_argument("ref_dir", help="folder of reference label maps with the same file names")
    parser.add_argument("-o", "--out", default=None, help="write metrics_per_case.csv, clinical.csv, summary.json "
                        "and the Bland-Altman PNGs here (default: PRED_DIR/evaluation)")
    parser.add_argument("--dataset_json", default=None, help="read the label names and values from this "
                        "dataset.json (default: the dataset.json next to REF_DIR when REF_DIR is a dataset's "
                        "labelsTr/labelsTs, else ACDC's RV 1, MYO 2, LV 3)")


def run(args) -> int:
    from pathlib import Path

    from nnunetv2_glrp.evaluate import ACDC_LABELS, evaluate_folder, format_summary, labels_from_dataset_json

    beside = Path(args.ref_dir).resolve().parent / "dataset.json"
    if args.dataset_json:
        labels = labels_from_dataset_json(args.dataset_json)
    elif Path(args.ref_dir).name in ("labelsTr", "labelsTs") and beside.is_file():
        labels = labels_from_dataset_json(beside)  # e.g. an LV + MYO dataset: its own numbering, not ACDC's
        print(f"labels from {beside}: {labels}")
    else:
        labels = ACDC_LABELS
    out = Path(args.out) if args.out else Path(args.pred_dir) / "evaluation"
    summary = evaluate_folder(args.pred_dir, args.ref_dir, labels=labels, out_dir=out)
    print(format_summary(summary))
    print(f"written: {out / 'metrics_per_case.csv'}, {out / 'clinical.csv'}, {out / 'summary.json'}")
    return 0
