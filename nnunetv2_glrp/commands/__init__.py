"""One module per ``nnUNetv2_glrp`` subcommand.

Each module defines ``HELP`` (one line), ``configure(parser)`` (adds its arguments) and
``run(args) -> int``. Modules import heavy dependencies (torch, nnU-Net) inside ``run`` so that
``nnUNetv2_glrp -h`` stays fast.
"""

# subcommand name -> module under nnunetv2_glrp.commands
SUBCOMMANDS = {
    "make-phantom": "make_phantom",
    "convert-acdc": "convert_acdc",
    "apply-plans": "apply_plans",
    "prepare": "prepare",
    "preprocess-unlabeled": "preprocess_unlabeled",
    "pretrain": "pretrain",
    "write-splits": "write_splits",
    "trainers": "trainers",
    "determine-crf": "determine_crf",
    "predict": "predict",
    "crf": "crf",
    "evaluate": "evaluate",
    "demo": "demo",
}
