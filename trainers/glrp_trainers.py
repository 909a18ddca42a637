"""GLRP fine-tuning trainers for ``nnUNetv2_train/-predict -tr NAME`` (found via ``nnUNet_extTrainer``).

Hand-written: the five methods. Generated below: ``<Method>_k<K>[_paper][_cpu|_tiny]`` for K in
2, 6, 10, 15, 20, 30, 105 (and the k-less ``_paper``/``_cpu``/``_tiny`` forms). The logic lives in
:mod:`nnunetv2_glrp.finetuning`.
"""

from __future__ import annotations

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


for _base in (GLRPTrainer, GRPTrainer, LRPTrainer, GLRPLinearTrainer, RandomInitTrainer):
    globals().update(generate_variants(_base, __name__))
del _base
