"""``nnUNetv2_glrp convert-mnms``: M&Ms layout -> nnU-Net raw dataset (ACDC label numbering, vendor hold-out)."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_conversion_options

HELP = ("convert an M&Ms-layout folder (<id>/<id>_sa.nii.gz + _sa_gt.nii.gz and the information CSV, or 3D "
        "<id>_sa_ED/ES[_gt].nii.gz, or M&Ms-2's <id>_SA_ED/ES[_gt].nii.gz + _SA_CINE.nii.gz) to "
        "$nnUNet_raw/DatasetXXX_NAME in ACDC's label numbering")


def configure(parser) -> None:
    parser.add_argument("root", help="M&Ms folder (searched recursively for subjects and the information CSV)")
    add_conversion_options(parser, default_name="MnMs", split_forms=" or 'vendor:X': every subject of vendor X is "
                           "the test set, the rest train:val 7:1")
    parser.add_argument("--info", default=None, help="the information CSV (subject, Vendor, Centre, ED, ES 0-based; "
                        "M&Ms-2's SUBJECT_CODE, VENDOR); default: the one CSV under root with a Vendor column")


def run(args) -> int:
    from nnunetv2_glrp.conversion import convert_mnms
    from nnunetv2_glrp.conversion.mnms_converter import vendor_counts
    from nnunetv2_glrp.dataset_split import read_split

    out = convert_mnms(args.root, args.dataset, split=args.split, seed=args.seed, split_file=args.split_file,
                       info=args.info, dataset_name=args.name, overwrite=args.overwrite, n4=args.n4)
    record = read_split(out)
    flipped = [p for p, o in record["slice_order"].items() if o["flipped"]]
    counts = "; ".join(f"{s}: " + (", ".join(f"{v} {n}" for v, n in c.items()) or "none")
                       for s, c in vendor_counts(record).items())
    print(f"written {out}: {len(record['train'])} train / {len(record['val'])} val / {len(record['test'])} test "
          f"subjects (vendors {counts}); flipped to base-first: {', '.join(flipped) or 'none'}")
    return 0
