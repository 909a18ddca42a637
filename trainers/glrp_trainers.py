"""GLRP fine-tuning trainers for ``nnUNetv2_train/-predict -tr NAME`` (found via ``nnUNet_extTrainer``).

Defined at import from the project's registry (``nnunetv2_glrp.registry.TRAINER_FAMILIES``) by
:func:`nnunetv2_glrp.finetuning.variants.family_trainers`: one class per method, then its variants, then
nnU-Net's own trainer at each budget (so searching the code for a name finds nothing;
``nnUNetv2_glrp trainers`` prints every name). Name grammar::

    <Method>Trainer[_k<K>][_paper|_decwarm|_semi|...][_cpu|_cpulong|...]

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
- ``_semi``: nnU-Net's recipe plus weak-to-strong consistency on the unlabeled cine frames of the train/val
  patients (after UniMatch; :mod:`nnunetv2_glrp.finetuning.semi_trainer`);
- ``_cpu``: the demo budget (10 x 20 iterations, "cpu" pretraining preset); without it the full one (the
  recipe's length, "full" pretraining preset).

Examples: ``GLRPTrainer`` (all patients, nnU-Net recipe, full budget), ``GLRPTrainer_k6``,
``GRPTrainer_k2_paper``, ``RandomInitTrainer_k2_cpu``, ``GLRPLinearTrainer_k105_paper_cpu``.
Not a trainer: ``GLRPTrainer_k7`` (K outside the list). Also here: ``NnunetControlTrainer`` and
``NnunetControlTrainer_cpu``, nnU-Net's own ``nnUNetTrainer`` with only the budget applied (the ``nnU-Net``
row of ``reproduce``, the demo and the few-label benchmark; :mod:`nnunetv2_glrp.finetuning.nnunet_control`).
Recipes and budgets: :mod:`nnunetv2_glrp.finetuning.recipes`; the trainer logic: :mod:`nnunetv2_glrp.finetuning`.
"""

from __future__ import annotations

from nnunetv2_glrp.finetuning.variants import family_trainers

globals().update(family_trainers(__name__))
