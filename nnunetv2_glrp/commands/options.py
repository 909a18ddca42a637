"""Options shared by the subcommands, spelled as nnU-Net's own commands spell them.

``-d`` dataset, ``-c`` configuration, ``-p`` plans identifier, ``-np`` worker processes, ``-device``;
long forms use underscores (``--plans_identifier``, ``--num_processes``) like nnU-Net's
``--verify_dataset_integrity``. Earlier spellings of this package (``-pl``, ``--dataset-id``,
``--batch-size``, ...) still parse as hidden aliases: :func:`hidden_alias` registers them with the
parser without showing them in ``-h``.
"""

from __future__ import annotations

import argparse

DEFAULT_PLANS = "nnUNetPlans"
OVERLAY_NAMES = ("nnunet_cpu", "paper_unet_cpu", "paper_unet")


def hidden_alias(parser: argparse.ArgumentParser, action: argparse.Action, *aliases: str) -> argparse.Action:
    """Let ``aliases`` set ``action`` too, without listing them in the help."""
    for alias in aliases:
        parser._option_string_actions[alias] = action  # what add_argument does for shown option strings
    return action


def add_dataset(parser, help: str = "dataset name or id (e.g. 27 or Dataset027_ACDC)", **kwargs) -> argparse.Action:
    return parser.add_argument("-d", "--dataset", dest="dataset", required=True, help=help, **kwargs)


def add_configuration(parser, help: str) -> argparse.Action:
    return parser.add_argument("-c", "--configuration", dest="configuration", required=True, help=help)


def add_plans_identifier(parser, *aliases: str) -> argparse.Action:
    action = parser.add_argument("-p", "--plans_identifier", dest="plans_identifier", default=DEFAULT_PLANS,
                                 help=f"nnU-Net plans identifier, as in nnUNetv2_train -p (default: {DEFAULT_PLANS})")
    return hidden_alias(parser, action, *aliases)


def add_num_processes(parser) -> argparse.Action:
    return parser.add_argument("-np", "--num_processes", dest="num_processes", type=int, default=1,
                               help="worker processes (default: 1)")


def add_device(parser, help: str = "device to run on (default: cpu)") -> argparse.Action:
    return parser.add_argument("-device", "--device", dest="device", default="cpu", choices=("cpu", "cuda"), help=help)


def add_overlay(parser, default: str | None = "nnunet_cpu") -> argparse.Action:
    return parser.add_argument(
        "--overlay", dest="overlay", default=default,
        help="plans overlay adding a configuration: nnunet_cpu (nnU-Net's 2d design at CPU size), paper_unet_cpu "
             "(the paper's BatchNorm/ReLU U-Net at CPU size), paper_unet (the paper's U-Net at full size), or a "
             "path to an overlay JSON"
             + (f" (default: {default})" if default else "; required"))


def refuse_overlay_as_plans_identifier(plans_identifier: str) -> None:
    """``-p paper_unet`` meant the overlay before ``-p`` became nnU-Net's plans identifier: say so instead of planning.

    The overlays' names from before their rename (``-pl paper``) are refused too, naming the new overlay: they
    would otherwise plan a new plans file of that name."""
    from nnunetv2_glrp.preparation.overlays import RENAMED_OVERLAYS

    overlay = RENAMED_OVERLAYS.get(plans_identifier, plans_identifier)
    if overlay in OVERLAY_NAMES:
        raise ValueError(f"-p is nnU-Net's plans identifier (as in nnUNetv2_train -p), not the overlay; "
                         f"use --overlay {overlay}")


def add_conversion_options(parser, *, default_name: str, split_forms: str = "", n4: bool = True) -> None:
    """The options every ``convert-*`` command shares, in this order.

    ``-d/--dataset`` (new dataset id; hidden alias ``--dataset-id``), ``--split`` (default 7:1:2; ``split_forms``
    names the converter's other accepted values, e.g. ``" or 'official' (testing/ = test)"``), ``--seed``,
    ``--split_file``, ``--n4`` (only where ``n4``: the converter has an N4 step), ``--name`` (default
    ``default_name``) and ``--overwrite``."""
    hidden_alias(parser, parser.add_argument("-d", "--dataset", dest="dataset", type=int, required=True,
                                             help="id of the new nnU-Net dataset (1-999)"), "--dataset-id")
    parser.add_argument("--split", default="7:1:2", help=f"'train:val:test' ratio over all patients (default: 7:1:2)"
                        f"{split_forms}; train and val must get at least one patient each")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient shuffle (default: 0)")
    parser.add_argument("--split_file", dest="split_file", default=None,
                        help="take the split from a file instead of drawing it: JSON {\"train\": [...], \"val\": "
                        "[...], \"test\": [...]} of patient ids or CSV with header 'patient,set'; every patient "
                        "exactly once (overrides --split and --seed)")
    if n4:
        parser.add_argument("--n4", action="store_true",
                            help="N4 bias-field correction of every image written (default: off)")
    parser.add_argument("--name", default=default_name, help=f"dataset name (default: {default_name})")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder (default: refuse)")
