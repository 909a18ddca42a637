"""Preparation: a converted raw dataset -> what pretraining and fine-tuning read, in pipeline order.

1. :mod:`~nnunetv2_glrp.preparation.planning`: nnU-Net's integrity check, fingerprint and plans.
2. :mod:`~nnunetv2_glrp.preparation.overlays`: our configurations (``nnunet_cpu``, ``paper_unet_cpu``,
   ``paper_unet``) added to the plans file.
3. :mod:`~nnunetv2_glrp.preparation.pipeline`: labeled preprocessing (nnU-Net's preprocessor) and
   the whole ``prepare`` command, steps 1-5 in order.
4. :mod:`~nnunetv2_glrp.preparation.unlabeled`: the unlabeled cine frames through the same preprocessor.
5. Patient-level ``splits_final.json``: :func:`nnunetv2_glrp.dataset_split.write_splits_final`.

:mod:`~nnunetv2_glrp.preparation.records` holds what every step's output was made from (raw
dataset state, plans hash), so a step is redone exactly when its inputs changed. Light imports
only: nnU-Net is imported inside the functions.
"""
