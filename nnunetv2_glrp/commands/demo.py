"""``nnUNetv2_glrp demo``: the whole pipeline on a synthetic cine dataset, minutes on a 2-core CPU."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_device

HELP = "run the end-to-end demo (phantom -> convert -> plan -> pretrain -> fine-tune k=2 -> predict -> Dice)"


def configure(parser) -> None:
    parser.add_argument("-o", "--out", default="demo_output",
                        help="output folder, its own nnU-Net folders inside (default: demo_output)")
    parser.add_argument("--patients", type=int, default=20, help="phantom patients (default: 20)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantom and the split (default: 0)")
    parser.add_argument("--semi", action="store_true",
                        help="also fine-tune GLRP with the _semi recipe (unlabeled cine frames during fine-tuning): "
                             "one more row, 4.6 more minutes on a 2-core CPU (measured 2026-12-04); off by default because "
                             "at the demo's 200 iterations its teacher is never confident, so the row shows no gain")
    add_device(parser, "training device (default: cpu)")


def run(args) -> int:
    from nnunetv2_glrp.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=args.out, patients=args.patients, seed=args.seed, device=args.device,
                        semi_methods=("GLRP",) if args.semi else ()))
    return 0
