"""``nnUNetv2_glrp reproduce``: train, predict and evaluate the grid of a paper table; tables and figures."""

from __future__ import annotations

from nnunetv2_glrp.commands.options import (
    add_configuration, add_dataset, add_device, add_plans_identifier, hidden_alias,
)
from nnunetv2_glrp.finetuning.recipes import RECIPES
from nnunetv2_glrp.registry import METHODS, PRETRAINING_SEEDS

HELP = ("reproduce Table 1, 3, 5 or 7 of the paper on a dataset: trains every (method, k, fold, seed) through "
        "nnUNetv2_train (finished ones skipped), predicts imagesTs, evaluates against labelsTs, writes per-run JSON, "
        "a CSV, Markdown tables beside the paper's ACDC numbers and PNG figures; a rerun resumes")


def configure(parser) -> None:
    add_dataset(parser)
    add_configuration(parser, "nnU-Net configuration to train, e.g. paper_unet or nnunet_cpu")
    parser.add_argument("--table", type=int, default=1, choices=(1, 3, 5, 7),
                        help="1: mean Dice by method and k (Random, SimCLR, GCL, PCL, GLRP); 3, 5, 7: per-class Dice "
                        "and HD at k = 10 (3: PCL vs GLRP, 5: GLRPLinear/GRP/LRP/GLRP, 7: GLRP vs GLRP+CRF) "
                        "(default: 1)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help=f"methods instead of the table's ({', '.join(METHODS)}, or the paper's labels such as "
                        "GLRP-cl; nnU-Net = nnU-Net's own trainer from scratch on the same k patients); Random is "
                        "always run, as the reference")
    parser.add_argument("--k", nargs="+", type=int, default=None,
                        help="numbers of labeled patients (default: the table's, 2 6 10 15 20 30 105 for Table 1, "
                        "10 otherwise)")
    parser.add_argument("-f", "--folds", nargs="+", type=int, default=[0], help="folds (default: 0)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2],
                        help="GLRP_SEED values: each draws its own k patients and initialisation (default: 0 1 2)")
    parser.add_argument("--budget", default="cpu",
                        help="full: trainers without a budget suffix (the full length, for a GPU); cpu: the _cpu "
                        "trainers; another name B: trainers named ..._B of one's own (default: cpu)")
    parser.add_argument("--recipe", default="nnunet", choices=tuple(RECIPES),
                        help="nnunet: nnU-Net's recipe (no infix); paper: the paper's fine-tuning hyperparameters "
                        "(_paper trainers: CE, Adam 5e-4, cosine, batch 12); decwarm: decoder warm-up; semi: nnU-Net's recipe plus "
                        "consistency on the unlabeled cine frames (_semi trainers) (default: "
                        "nnunet); the nnU-Net row always runs nnU-Net's recipe")
    parser.add_argument("--pretrained_encoder", default=None,
                        help="pretrained_encoder.pth (nnUNetv2_glrp pretrain) that every pretrained row fine-tunes "
                        "from instead of the budget's pretraining preset; its models get their own results tree")
    parser.add_argument("--pretraining_seeds", default="shared", choices=PRETRAINING_SEEDS,
                        help="shared: one pretraining (GLRP_PRETRAIN_SEED, default 0) for every seed; per-seed: seed "
                        "S's pretrained rows fine-tune from an encoder pretrained with seed S, so the seeds also draw "
                        "the pretraining and the intervals include its variance (default: shared)")
    hidden_alias(parser, parser.add_argument(
        "--extra_pools", nargs="+", default=[], metavar="DATASET",
        help="other converted datasets (names or ids) whose train/val frames the pretrained rows' pretraining adds "
        "(as nnUNetv2_glrp pretrain --extra_pools); their models get their own results tree (default: none)"),
        "--extra-pools")
    hidden_alias(parser, parser.add_argument(
        "--pretraining_epochs", type=int, default=None, metavar="N",
        help="epochs of the pretrained rows' pretraining instead of the budget's preset's (as nnUNetv2_glrp pretrain "
        "--epochs; the cpu preset's 30 epochs are 1,500 iterations); their models get their own results tree "
        "(default: the preset's)"),
        "--pretraining-epochs")
    add_plans_identifier(parser)
    add_device(parser)
    parser.add_argument("-o", "--out", default=None,
                        help="output folder (default: evaluation/results/<dataset>/<configuration>/<budget>)")
    parser.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--bootstrap_seed", type=int, default=0, help="seed of the bootstrap (default: 0)")


def run(args) -> int:
    from nnunetv2_glrp.reproduction.api import reproduce

    reproduce(args.dataset, args.configuration, table=args.table, methods=args.methods, ks=args.k, folds=args.folds,
              seeds=args.seeds, budget=args.budget, recipe=args.recipe, device=args.device,
              plans=args.plans_identifier, out=args.out, n_boot=args.bootstrap, bootstrap_seed=args.bootstrap_seed,
              pretrained_encoder=args.pretrained_encoder, pretraining_seeds=args.pretraining_seeds,
              extra_pools=args.extra_pools, pretraining_epochs=args.pretraining_epochs)
    return 0
