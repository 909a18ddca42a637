"""``nnUNetv2_glrp convert-sunnybrook``: Sunnybrook Cardiac Data layout -> nnU-Net raw dataset (LV + MYO)."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_conversion_options

HELP = ("convert a Sunnybrook-layout folder (dicoms/, contourfiles/, link.csv) to $nnUNet_raw/DatasetXXX_NAME "
        "labelled LV + MYO (patient-level split, unlabeled cine frames)")


def configure(parser) -> None:
    parser.add_argument("root", help="folder with dicoms/<patient>/*.dcm, contourfiles/<folder>/**/"
                        "IM-0001-NNNN-[io]contour-manual.txt and optionally link.csv (patient_id,original_id)")
    add_conversion_options(parser, default_name="Sunnybrook", n4=False)  # no N4 step for Sunnybrook


def run(args) -> int:
    from nnunetv2_glrp.conversion import convert_sunnybrook
    from nnunetv2_glrp.dataset_split import read_split

    out = convert_sunnybrook(args.root, args.dataset, split=args.split, seed=args.seed, dataset_name=args.name,
                             overwrite=args.overwrite, split_file=args.split_file)
    record = read_split(out)
    flipped = [p for p, o in record["slice_order"].items() if o["flipped"]]
    partial = sum(1 for c in record["cases"].values() if c["kind"] == "labeled"
                  and c["n_contoured_slices"] < record["n_slices"][c["patient"]])
    print(f"written {out}: {len(record['train'])} train / {len(record['val'])} val / {len(record['test'])} test "
          f"patients; flipped to base-first: {', '.join(flipped) or 'none'}; labeled cases with uncontoured "
          f"slices (stored as background): {partial}")
    return 0
