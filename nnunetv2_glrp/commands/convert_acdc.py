"""``nnUNetv2_glrp convert-acdc``: ACDC release -> nnU-Net raw dataset with patient-level split."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import hidden_alias

HELP = "convert an ACDC-layout folder to $nnUNet_raw/DatasetXXX_NAME (patient-level split, unlabeled cine frames)"


def configure(parser) -> None:
    parser.add_argument("acdc_root", help="folder with training/ and testing/ patient folders")
    hidden_alias(parser, parser.add_argument("-d", "--dataset", dest="dataset", type=int, required=True,
                                             help="id of the new nnU-Net dataset (1-999)"), "--dataset-id")
    parser.add_argument("--split", default="7:1:2", help="'train:val:test' ratio over all patients (default: 7:1:2) "
                        "or 'official' (testing/ = test); train and val must get at least one patient each")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle (default: 0)")
    parser.add_argument("--split_file", dest="split_file", default=None,
                        help="take the split from a file instead of drawing it: JSON {\"train\": [...], \"val\": "
                        "[...], \"test\": [...]} of patient ids or CSV with header 'patient,set'; every patient "
                        "exactly once (overrides --split and --seed)")
    parser.add_argument("--n4", action="store_true", help="N4 bias-field correction of every image written (default: off)")
    parser.add_argument("--name", default="ACDC", help="dataset name (default: ACDC)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder (default: refuse)")


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
