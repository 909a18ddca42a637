"""The ``nnUNetv2_glrp`` console command: parses arguments, then calls one function per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from nnunetv2_glrp.commands import SUBCOMMANDS
from nnunetv2_glrp.environment import configure_nnunet_environment


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_glrp",
        description="GLRP for nnU-Net v2: data conversion, plans, contrastive pretraining and the demo. "
        "nnUNet_raw/nnUNet_preprocessed/nnUNet_results default to ./nnunet_data/* (or $GLRP_DATA/*) "
        "when unset; nnUNet_extTrainer gets this package's trainers/ folder.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"nnunetv2_glrp.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    # nnU-Net reads its folders at import time: set them before any subcommand imports nnunetv2
    configure_nnunet_environment()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        return int(args._run(args) or 0)
    except (ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        # errors we raise on bad input carry the file/case and the problem: show them without a traceback
        if args.verbose:
            raise
        print(f"nnUNetv2_glrp {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
