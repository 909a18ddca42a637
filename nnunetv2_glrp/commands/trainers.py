"""``nnUNetv2_glrp trainers``: every trainer name ``nnUNetv2_train -tr`` accepts from this package."""

from __future__ import annotations

USES_NNUNET_FOLDERS = False  # the CLI creates no ./nnunet_data for this command
HELP = "list every GLRP fine-tuning trainer (hand-written and generated) for nnUNetv2_train -tr NAME"


def configure(parser) -> None:
    parser.description = (HELP + ". Names: <Method>Trainer[_k<K>][_paper][_cpu], e.g. GLRPTrainer_k6, "
                          "GRPTrainer_k2_paper, RandomInitTrainer_k2_cpu; see trainers/glrp_trainers.py.")


def run(args) -> int:
    from nnunetv2_glrp.finetuning.variants import shipped_trainer_names

    for name in shipped_trainer_names():
        print(name)
    return 0
