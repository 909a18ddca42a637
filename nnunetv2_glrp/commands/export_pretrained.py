"""``nnUNetv2_glrp export-pretrained``: a checkpoint for nnU-Net's own ``nnUNetv2_train -pretrained_weights``."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import add_configuration, add_dataset, add_plans_identifier
from nnunetv2_glrp.commands.pretrain import PRESET_CHOICES
from nnunetv2_glrp.registry import PRETRAINING_METHODS

HELP = ("write a whole-network checkpoint (pretrained encoder + seeded initial decoder) that plain "
        "nnUNetv2_train DATASET CONFIG FOLD -pretrained_weights CKPT accepts")


def configure(parser) -> None:
    add_dataset(parser)
    add_configuration(parser, "2D plans configuration the encoder was pretrained on (e.g. nnunet_cpu, paper_unet)")
    parser.add_argument("-m", "--method", dest="method", default="GLRP", choices=tuple(PRETRAINING_METHODS),
                        help="pretraining method of the encoder (default: GLRP)")
    add_plans_identifier(parser)
    parser.add_argument("--encoder", default=None,
                        help="a pretrained_encoder.pth to export (default: $GLRP_PRETRAINED_ENCODER, else the "
                        "pretraining cache entry of -m/--preset/--pretraining_seed, as the trainers find it)")
    parser.add_argument("--preset", default="cpu", choices=PRESET_CHOICES,
                        help="pretraining preset of the cache entry (default: cpu)")
    parser.add_argument("--pretraining_seed", type=int, default=0,
                        help="pretraining seed of the cache entry (default: 0, as GLRP_PRETRAIN_SEED)")
    parser.add_argument("--seed", type=int, default=0,
                        help="torch seed of the decoder's initial weights (default: 0)")
    parser.add_argument("-o", "--out", required=True, help="checkpoint file to write (e.g. glrp_k6.pth)")


def run(args) -> int:
    from nnunetv2_glrp.finetuning.export import export_pretrained

    record = export_pretrained(args.dataset, args.configuration, args.method, args.out, args.plans_identifier,
                               encoder=args.encoder, seed=args.seed, preset=args.preset,
                               pretraining_seed=args.pretraining_seed)
    print(f"encoder: {record['encoder']} ({record['encoder_source']}; {record['encoder_tensors']} tensors)")
    print(f"decoder: freshly initialised with seed {record['seed']}")
    print(f"written: {args.out}")
    print(f"fine-tune with nnU-Net: nnUNetv2_train {args.dataset} {args.configuration} FOLD "
          f"-p {args.plans_identifier} -pretrained_weights {args.out}")
    return 0
