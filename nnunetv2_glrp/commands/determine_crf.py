"""``nnUNetv2_glrp determine-crf``: choose the post-processing on the fold's validation cases."""

from __future__ import annotations

from nnunetv2_glrp.commands._models import add_model_arguments, ensemble_from_args

HELP = ("evaluate no CRF, largest component only and a small CRF grid on the fold's validation cases; register "
        "a CRF in crf.json only if it raises mean Dice without raising mean HD95")


def configure(parser) -> None:
    add_model_arguments(parser, fold_help="the one fold whose validation cases choose the setting (default: 0); "
                        "predict -f 0 1 ... then uses this fold's crf.json")


def run(args) -> int:
    from nnunetv2_glrp.postprocessing.validation_data import determine_crf

    ensemble = ensemble_from_args(args)
    record = determine_crf(ensemble, device=args.device)
    for c in record["candidates"]:
        print(f"{c['setting']['name']:<28} Dice {c['mean_dice']:.4f}  HD95 {c['mean_hd95']}  "
              f"{'qualifies' if c['qualifies'] else c['why_not']}")
    print(f"registered: {record['chosen']['name']} ({record['reason']})")
    print(f"written: {ensemble.registration_path}")
    return 0
