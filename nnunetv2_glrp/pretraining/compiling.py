"""Optional ``torch.compile`` of the encoder's forward in the pretraining step (``PretrainingConfig.compile``).

What is compiled is the function the step calls, ``x -> encoder_features(network, x, tap)``, not the module: the
network stays an ordinary ``nn.Module``, so its ``state_dict`` keys (checkpoints, ``pretrained_encoder.pth``) are
those of the uncompiled encoder; ``torch.compile(module)`` would wrap it in an ``OptimizedModule`` whose keys carry
an ``_orig_mod.`` prefix. Gradients flow through the compiled function to the module's parameters as usual.
The compiled function is built once per run (first call compiles; later calls with the same shapes reuse it).

The ``"pre-norm"`` tap: ``encoder_features`` registers forward hooks on every call, which torch.compile cannot
trace (a graph break: the encoder would run eagerly or be recompiled each step). The compiled function therefore
registers the same hooks once, for the life of the network, writing into one dict that the traced forward fills and empties;
the captured tensors are the outputs of each stage's last convolution, exactly what ``encoder_features`` returns.
"""

from __future__ import annotations

from typing import Callable

import torch

from nnunetv2_glrp.models import encoder_features
from nnunetv2_glrp.models.taps import FEATURE_TAPS, last_convolution

#: ``compile``: "none" (eager) or one of torch.compile's modes
COMPILE_MODES = ("none", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def feature_function(network, tap: str, mode: str = "none", backend: str | None = None) -> Callable:
    """``x [B, C, H, W] -> list of stage feature maps`` (see ``models.encoder_features``), compiled with
    ``torch.compile(mode=mode)`` unless ``mode`` is "none". ``backend`` (default: torch's, inductor) lets tests
    compile without a C++ toolchain ("eager", "aot_eager")."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile must be one of {COMPILE_MODES}, got {mode!r}")

    if tap not in FEATURE_TAPS:
        raise ValueError(f"unknown feature tap {tap!r}; choose one of {FEATURE_TAPS}")
    if mode == "none":
        return lambda x: encoder_features(network, x, tap)
    captured: dict[int, torch.Tensor] = {}
    if tap == "pre-norm":  # hooks registered once, outside the traced function (see the module docstring)
        for i, stage in enumerate(network.encoder.stages):
            last_convolution(stage).register_forward_hook(
                lambda module, inputs, output, i=i: captured.__setitem__(i, output))

    def features(x: torch.Tensor) -> list[torch.Tensor]:
        feats = network.encoder(x)
        if isinstance(feats, torch.Tensor):
            raise ValueError("network.encoder returned a single tensor; set encoder.return_skips=True to tap every stage")
        # pop: the dict is empty again after every call (the same guards each step, so no recompilation; no
        # activations kept alive between steps)
        return [captured.pop(i) for i in range(len(feats))] if tap == "pre-norm" else list(feats)

    kwargs = {} if backend is None else {"backend": backend}
    if backend not in (None, "inductor"):
        return torch.compile(features, **kwargs)  # modes are inductor options
    return torch.compile(features, mode=mode, **kwargs)
