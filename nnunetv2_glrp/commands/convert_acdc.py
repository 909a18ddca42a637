"""``nnUNetv2_glrp convert-acdc``: ACDC release -> nnU-Net raw dataset with patient-level split."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_conversion_options

HELP = "convert an ACDC-layout folder to $nnUNet_raw/DatasetXXX_NAME (patient-level split, unlabeled cine frames)"


def configure(parser) -> None:
    parser.add_argument("acdc_root", help="folder with training/ and testing/ patient folders")
    add_conversion_options(parser, default_name="ACDC", split_forms=" or 'official' (testing/ = test)")


def run(args) -> int:
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.dataset_split import read_split

    out = convert_acdc(args.acdc_root, args.dataset, split=args.split, seed=args.seed, n4=args.n4,
                       dataset_name=args.name, overwrite=args.overwrite, split_file=args.split_file)
    record = read_split(out)
    flipped = [p for p, o in record["slice_order"].items() if o["flipped"]]
    print(f"written {out}: {len(record['train'])} train / {len(record['val'])} val / {len(record['test'])} test "
          f"patients; flipped to base-first: {', '.join(flipped) or 'none'}; "
          f"without 4D cine: {', '.join(record['missing_cine']) or 'none'}")
    return 0
