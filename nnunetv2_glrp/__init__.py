"""nnunetv2_glrp: GLRP contrastive pretraining and few-label fine-tuning as an nnU-Net v2 plugin.

Importing the package has no side effects; nnU-Net's environment variables are set by
:func:`nnunetv2_glrp.environment.configure_nnunet_environment`, which the CLI calls before it
imports nnU-Net (nnU-Net reads its paths once, at import time).
"""

__version__ = "0.1.0"
