"""GLRP fine-tuning trainers for ``nnUNetv2_train/-predict -tr NAME`` (found via ``nnUNet_extTrainer``).

Hand-written below: the eight methods. Generated at import by
:func:`nnunetv2_glrp.finetuning.variants.generate_variants` (so searching the code for a generated
name finds nothing; ``nnUNetv2_glrp trainers`` prints every name, 384 in all, plus NnunetControlTrainer_cpu). Name grammar::

    <Method>Trainer[_k<K>][_paper|_decwarm][_cpu]

- ``<Method>``: ``GLRP`` (GLRP-cl), ``GRP`` (GRP-cl), ``LRP`` (LRP-cl), ``GLRPLinear`` (GLRP-cl*),
  ``RandomInit`` (no pretraining, the paper's Random row), and the paper's baselines pretrained in the
  same framework (same data, network, heads, augmentation, optimizer, cache; only the loss and, for
  GCL, the batches differ; see ``nnunetv2_glrp.pretraining.methods``): ``SimCLR``, ``GCL``, ``PCL``;
- ``_k<K>``: fine-tune on K labeled patients, K in 2, 6, 10, 15, 20, 30, 105 (the paper's Table 1);
  without it, all training patients of the fold;
- ``_paper``: the paper's fine-tuning recipe (CE, Adam 5e-4, cosine, batch 12, 200 epochs); without it exactly
  nnU-Net's recipe (Dice+CE, SGD, poly, 1000 x 250 iterations);
- ``_decwarm``: nnU-Net's recipe with a decoder-only warm-up (encoder frozen for the first 10 % of
  the iterations, then at half the learning rate), to keep what pretraining learned;
- ``_cpu``: the demo budget (10 x 20 iterations, "cpu" pretraining preset); without it the full one (the
  recipe's length, "full" pretraining preset).

Examples: ``GLRPTrainer`` (all patients, nnU-Net recipe, full budget), ``GLRPTrainer_k6``,
``GRPTrainer_k2_paper``, ``RandomInitTrainer_k2_cpu``, ``GLRPLinearTrainer_k105_paper_cpu``.
Not a trainer: ``GLRPTrainer_k7`` (K outside the list). Also here: ``NnunetControlTrainer_cpu``,
nnU-Net's own ``nnUNetTrainer`` with only the ``_cpu`` budget applied (the control row of the demo
and of benchmarks/bench_few_label.py; :mod:`nnunetv2_glrp.finetuning.nnunet_control`). Recipes and budgets:
:mod:`nnunetv2_glrp.finetuning.recipes`; the trainer logic: :mod:`nnunetv2_glrp.finetuning`.
"""

from __future__ import annotations

from nnunetv2_glrp.finetuning.nnunet_control import NnunetControlTrainer
from nnunetv2_glrp.finetuning.recipes import CPU_BUDGET
from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer
from nnunetv2_glrp.finetuning.variants import generate_variants


class GLRPTrainer(GLRPFineTuningTrainer):
    """Encoder pretrained with GLRP (0.5 global + 0.5 local relative-position loss)."""

    pretraining_method = "GLRP"


class GRPTrainer(GLRPFineTuningTrainer):
    """Encoder pretrained with the global loss only (GRP-cl)."""

    pretraining_method = "GRP"


class LRPTrainer(GLRPFineTuningTrainer):
    """Encoder pretrained with the local loss only (LRP-cl)."""

    pretraining_method = "LRP"


class GLRPLinearTrainer(GLRPFineTuningTrainer):
    """GLRP-cl*: slice similarity 1 - |x_i - x_j| instead of the inverse quadratic."""

    pretraining_method = "GLRPLinear"


class RandomInitTrainer(GLRPFineTuningTrainer):
    """The paper's Random row: the same fine-tuning from a randomly initialised network."""

    pretraining_method = None


class SimCLRTrainer(GLRPFineTuningTrainer):
    """Baseline: encoder pretrained with SimCLR's NT-Xent (positive = the other view of the slice)."""

    pretraining_method = "SimCLR"


class GCLTrainer(GLRPFineTuningTrainer):
    """Baseline: encoder pretrained with GCL's global loss G^D (positives = same partition of other volumes)."""

    pretraining_method = "GCL"


class PCLTrainer(GLRPFineTuningTrainer):
    """Baseline: encoder pretrained with PCL (positives = slices closer than the position threshold)."""

    pretraining_method = "PCL"


class NnunetControlTrainer_cpu(NnunetControlTrainer):
    """nnU-Net's nnUNetTrainer at the _cpu budget (epochs, iterations, Adam 1e-3); no k-patient draw."""

    budget = CPU_BUDGET


for _base in (GLRPTrainer, GRPTrainer, LRPTrainer, GLRPLinearTrainer, RandomInitTrainer, SimCLRTrainer, GCLTrainer,
              PCLTrainer):
    globals().update(generate_variants(_base, __name__))
del _base
