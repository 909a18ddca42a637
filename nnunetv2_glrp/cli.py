"""The ``nnUNetv2_glrp`` console command: parses arguments, then calls one function per subcommand."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from nnunetv2_glrp import __version__
from nnunetv2_glrp.commands import SUBCOMMANDS
from nnunetv2_glrp.environment import configure_nnunet_environment


#: commands whose output appears only complete (temporary folder renamed into place, removed on any error)
ATOMIC_COMMANDS = ("convert-acdc", "convert-sunnybrook", "convert-folder", "convert-mnms")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nnUNetv2_glrp",
        description="GLRP for nnU-Net v2: data conversion, plans, contrastive pretraining and the demo. "
        "nnUNet_raw/nnUNet_preprocessed/nnUNet_results default to ./nnunet_data/* (or $GLRP_DATA/*) "
        "when unset; nnUNet_extTrainer gets this package's trainers/ folder. Options are spelled as in nnU-Net: "
        "-d dataset, -c configuration, -p plans identifier, -np processes, -device.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks (default: off)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in SUBCOMMANDS.items():
        module = importlib.import_module(f"nnunetv2_glrp.commands.{module_name}")
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(p)
        p.set_defaults(_run=module.run, _folders=getattr(module, "USES_NNUNET_FOLDERS", True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # -h, --version and a mistyped command exit here, creating nothing
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        # nnU-Net reads its folders at import time: set them before any subcommand imports nnunetv2
        configure_nnunet_environment(create=args._folders)
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        # converters build in a temporary folder removed on any exception: nothing half-written remains
        note = "; nothing written" if args.command in ATOMIC_COMMANDS else ""
        print(f"nnUNetv2_glrp {args.command}: interrupted{note}", file=sys.stderr)
        return 130
    except (ValueError, OSError, RuntimeError) as exc:
        # errors we raise on bad input carry the file/case and the problem: one line, no traceback (-v shows it)
        if args.verbose:
            raise
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        print(f"nnUNetv2_glrp {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
