"""``nnUNetv2_glrp convert-folder``: a user's own short-axis cine folder -> nnU-Net raw dataset, any label subset."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_conversion_options

HELP = ("convert a user's folder of 3D/4D short-axis cine NIfTI files (labeled ED/ES frames found by --pattern or "
        "--table) to $nnUNet_raw/DatasetXXX_NAME with the labels given by --labels")


def configure(parser) -> None:
    parser.add_argument("root", help="folder with the images (paths in --pattern and --table are relative to it)")
    add_conversion_options(parser, default_name="Folder")
    parser.add_argument("--labels", required=True,
                        help="source label values by name, e.g. 'background=0,LV=1,MYO=2'; every value in the label "
                        "files must be named ('background=0+3' folds value 3 into background); written to dataset.json "
                        "as 0, 1, 2, ... in the order given; LV/MYO/RV are the names the slice-order check and the "
                        "clinical indices read")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--pattern", help="path pattern of the labeled images with {patient} and {frame} (1-based) "
                        "and/or {phase} (ED|ES), e.g. '{patient}/{patient}_frame{frame}.nii.gz'")
    source.add_argument("--table", help="CSV with header patient,frame,image,label[,phase][,cine], one row per labeled "
                        "frame; a 4D image/label gives its frame 'frame' (and a 4D image is the cine)")
    parser.add_argument("--label_pattern", default=None, help="label of each --pattern image, same fields "
                        "(default: the image pattern with _gt before .nii.gz)")
    parser.add_argument("--cine_pattern", default=None, help="4D cine per patient with {patient}, e.g. "
                        "'{patient}/{patient}_4d.nii.gz' (default: none; then ED and ES are the unlabeled images)")
    parser.add_argument("--slice_order", choices=("base-first", "apex-first"), default=None,
                        help="how stacks are stored where the labels cannot tell (no LV/MYO named, or no decisive "
                        "cue); default: keep those as stored")


def run(args) -> int:
    from nnunetv2_glrp.conversion import convert_folder
    from nnunetv2_glrp.dataset_split import read_split

    out = convert_folder(args.root, args.dataset, args.labels, pattern=args.pattern, label_pattern=args.label_pattern,
                         cine_pattern=args.cine_pattern, table=args.table, split=args.split, seed=args.seed,
                         split_file=args.split_file, slice_order=args.slice_order, dataset_name=args.name,
                         raw_root=None, overwrite=args.overwrite, n4=args.n4)
    record = read_split(out)
    flipped = [p for p, o in record["slice_order"].items() if o["flipped"]]
    undecided = [p for p, o in record["slice_order"].items() if o["stored"] == "undecided"]
    print(f"written {out}: {len(record['train'])} train / {len(record['val'])} val / {len(record['test'])} test "
          f"patients; labels {record['source_labels']}; flipped to base-first: {', '.join(flipped) or 'none'}; "
          f"order undecided, kept as stored: {', '.join(undecided) or 'none'}; "
          f"without 4D cine: {', '.join(record['missing_cine']) or 'none'}")
    return 0
