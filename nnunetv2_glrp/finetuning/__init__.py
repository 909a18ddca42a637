"""Fine-tuning: pretrained encoder loading, k-patient draws, recipes/budgets, trainer base and variants.

Nothing is imported here, so that ``finetuning.recipes`` (pure dataclasses) stays cheap to import for the
command-line parsers; the nnU-Net trainer base lives in :mod:`nnunetv2_glrp.finetuning.trainer_base`.
"""
