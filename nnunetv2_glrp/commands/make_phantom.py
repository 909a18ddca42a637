"""``nnUNetv2_glrp make-phantom``: write a synthetic cine phantom in the ACDC, folder, M&Ms or Sunnybrook layout."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import hidden_alias

LAYOUT_NAMES = {"acdc": "", "folder": "folder-layout ", "mnms": "M&Ms-layout ", "mnms3d": "M&Ms 3D-layout ",
                "mnms2": "M&Ms-2-layout ", "sunnybrook": "Sunnybrook-layout "}
USES_NNUNET_FOLDERS = False  # the CLI creates no ./nnunet_data for this command
HELP = ("write a synthetic short-axis cine phantom in the ACDC layout (training/, testing/, Info.cfg, 4D, ED/ES + gt), "
        "a user folder (LV + MYO labels, cases.csv), the M&Ms layout or the Sunnybrook layout (dicoms/, contourfiles/)")


def configure(parser) -> None:
    parser.add_argument("out", help="output folder (ACDC: gets training/ and testing/; Sunnybrook: dicoms/, "
                                    "contourfiles/, link.csv and truth/)")
    parser.add_argument("--layout", choices=("acdc", "folder", "mnms", "mnms3d", "mnms2", "sunnybrook"), default="acdc",
                        help="acdc (default): ACDC release layout, labels RV/MYO/LV; folder: <pid>/<pid>_cine.nii.gz, "
                             "<pid>_frameNN.nii.gz + _gt (LV 1, MYO 2 only) and cases.csv, for convert-folder; mnms: "
                             "M&Ms release layout (<id>/<id>_sa.nii.gz + _sa_gt.nii.gz 4D, mnms_info.csv, vendors "
                             "A-D); mnms3d: M&Ms 3D ED/ES files + results.csv; mnms2: M&Ms-2 layout "
                             "(<id>/<id>_SA_ED.nii.gz + _gt, ES alike, _SA_CINE.nii.gz 4D, _LA_ files, dataSet_info.csv); "
                             "sunnybrook: 2D DICOM files and LV contours (endocardium at ED and ES, epicardium at ED), "
                             "for convert-sunnybrook")
    parser.add_argument("--patients", type=int, default=20, help="number of patients (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument("--frames", type=int, default=8, help="cine frames per patient (default: 8)")
    parser.add_argument("--difficulty", choices=("easy", "realistic"), default="realistic",
                        help="realistic (default): look-alike structures around, inside and above the heart, "
                             "partial volume; easy: the heart in textured noise (what the tests use)")
    hidden_alias(parser, parser.add_argument("--first_patient", type=int, default=1,
                                             help="number of the first patient (default: 1)"), "--first-patient")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a non-empty output folder (default: refuse; old and new patients would mix)")


def run(args) -> int:
    if args.layout == "sunnybrook":
        from nnunetv2_glrp.conversion.phantom_sunnybrook import make_sunnybrook_phantom as make
    elif args.layout == "folder":
        from nnunetv2_glrp.conversion.phantom_layouts import make_folder_phantom as make
    elif args.layout in ("mnms", "mnms3d", "mnms2"):
        from functools import partial

        from nnunetv2_glrp.conversion.phantom_layouts import make_mnms_phantom

        make = partial(make_mnms_phantom, variant={"mnms": "4d", "mnms3d": "3d", "mnms2": "mnms2"}[args.layout])
    else:
        from nnunetv2_glrp.conversion.phantom import make_phantom as make

    patients = make(args.out, n_patients=args.patients, seed=args.seed, n_frames=args.frames,
                    first_patient=args.first_patient, difficulty=args.difficulty, overwrite=args.overwrite)
    apex = [p.patient_id for p in patients if p.apex_first]
    layout = LAYOUT_NAMES[args.layout]
    print(f"{len(patients)} {args.difficulty} {layout}phantom patients written to {args.out} (seed {args.seed}); "
          f"stored apex-first: {', '.join(apex) or 'none'}")
    return 0
