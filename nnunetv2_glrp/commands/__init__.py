"""One module per ``nnUNetv2_glrp`` subcommand.

Each module defines ``HELP`` (one line), ``configure(parser)`` (adds its arguments) and
``run(args) -> int``, and ``USES_NNUNET_FOLDERS = False`` when the command never touches nnU-Net's
folders (the CLI then creates no ``./nnunet_data``). Modules import heavy dependencies (torch,
nnU-Net) inside ``run`` so that ``nnUNetv2_glrp -h`` stays fast; shared options (spelled as in
nnU-Net) come from :mod:`nnunetv2_glrp.commands.options`.
"""

# subcommand name -> module under nnunetv2_glrp.commands
SUBCOMMANDS = {
    "make-phantom": "make_phantom",
    "convert-acdc": "convert_acdc",
    "convert-sunnybrook": "convert_sunnybrook",
    "convert-folder": "convert_folder",
    "convert-mnms": "convert_mnms",
    "apply-plans": "apply_plans",
    "prepare": "prepare",
    "preprocess-unlabeled": "preprocess_unlabeled",
    "pretrain": "pretrain",
    "export-pretrained": "export_pretrained",
    "write-splits": "write_splits",
    "trainers": "trainers",
    "determine-crf": "determine_crf",
    "predict": "predict",
    "crf": "crf",
    "evaluate": "evaluate",
    "reproduce": "reproduce",
    "demo": "demo",
}
