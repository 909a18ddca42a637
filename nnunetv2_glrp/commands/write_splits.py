"""``nnUNetv2_glrp write-splits``: patient-level splits_final.json from the dataset's glrp_split.json."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_dataset

HELP = "write $nnUNet_preprocessed/DATASET/splits_final.json (fold 0 = GLRP train/val, patient-level folds)"


def configure(parser) -> None:
    add_dataset(parser)
    parser.add_argument("--seed", type=int, default=0, help="seed of the 5-fold patient shuffle for folds 1-4 "
                                                            "(default: 0)")


def run(args) -> int:
    from nnunetv2_glrp.dataset_split import write_splits_final

    out = write_splits_final(args.dataset, seed=args.seed)
    print(f"written {out}")
    return 0
