"""Getting the pretrained encoder for a fine-tuning run: once per dataset/plans/config/method/preset.

``ensure_pretrained`` (nnunetv2_glrp.pretraining) runs or resumes pretraining only when its cache
is missing and is lock-file safe for concurrent callers. Under DDP every rank calls it: the ranks pretrain the
missing entry once, together (``pretraining.api``, ``docs/distributed.md``), or, when their number does not divide
the pretraining batch, the first rank to take the lock pretrains while the others block on the lock file (no
collective) and then reuse the cache; a ``dist.barrier()`` afterwards lines the ranks up before each loads the same
file into its unwrapped network.

A user who pretrained once with settings of their own (``nnUNetv2_glrp pretrain ... --epochs 60``)
points every fine-tuning at exactly that encoder with ``GLRP_PRETRAINED_ENCODER=<its
pretrained_encoder.pth>``. ``GLRP_EXTRA_POOLS=802,803`` makes the cached pretraining also use the train/val
frames of those converted datasets (``preparation.extra_pools``; its own cache entry), and
``GLRP_PRETRAIN_EPOCHS=60`` makes it run 60 epochs instead of the budget's preset's (the cache entry of
``nnUNetv2_glrp pretrain --epochs 60``). With a named encoder both are unused: the trainer then never pretrains,
and refuses a file of another method, plans identifier or configuration, or one pretrained on other patients (see
``pretraining.check_named_encoder``). The trainer's log and ``glrp_finetuning.json`` say which encoder
it used and why.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

#: environment variable naming the ``pretrained_encoder.pth`` every fine-tuning should start from
ENCODER_ENV = "GLRP_PRETRAINED_ENCODER"
#: environment variable naming extra unlabeled pools (datasets, comma-separated) the cached pretraining adds
POOLS_ENV = "GLRP_EXTRA_POOLS"
#: environment variable: pretraining epochs instead of the budget's preset's (a longer pretraining)
EPOCHS_ENV = "GLRP_PRETRAIN_EPOCHS"


def extra_pools_from_environment() -> tuple[str, ...]:
    """The dataset names or ids of ``$GLRP_EXTRA_POOLS`` (comma- or space-separated; empty when unset)."""
    return tuple(p for p in os.environ.get(POOLS_ENV, "").replace(",", " ").split() if p)


def pools_used(dataset_name: str) -> tuple[str, ...]:
    """The dataset names (sorted) of the extra pools a fine-tuning of ``dataset_name`` pretrains with: those of
    ``$GLRP_EXTRA_POOLS``, none when ``$GLRP_PRETRAINED_ENCODER`` names the encoder (the pools are then unused)."""
    from nnunetv2_glrp.preparation.extra_pools import pool_names

    if os.environ.get(ENCODER_ENV) or not extra_pools_from_environment():
        return ()
    return pool_names(extra_pools_from_environment(), dataset_name)


def epochs_from_environment() -> int | None:
    """``$GLRP_PRETRAIN_EPOCHS`` as a positive int (None when unset or empty); ValueError naming it otherwise."""
    text = os.environ.get(EPOCHS_ENV, "").strip()
    if not text:
        return None
    try:
        epochs = int(text)
    except ValueError:
        epochs = 0
    if epochs < 1:
        raise ValueError(f"{EPOCHS_ENV}={text!r}: expected a positive number of pretraining epochs")
    return epochs


def epochs_used() -> int | None:
    """The pretraining epochs a fine-tuning records: ``$GLRP_PRETRAIN_EPOCHS``, None when unset (the preset's) or
    when ``$GLRP_PRETRAINED_ENCODER`` names the encoder (the variable is then unused), as :func:`pools_used`."""
    return None if os.environ.get(ENCODER_ENV) else epochs_from_environment()


def pretraining_overrides(budget_overrides: dict) -> dict:
    """The pretraining config overrides of a fine-tuning: the budget's, with ``epochs`` from
    ``$GLRP_PRETRAIN_EPOCHS`` when it is set."""
    epochs = epochs_from_environment()
    return {**budget_overrides, "epochs": epochs} if epochs is not None else dict(budget_overrides)


def describe_pretraining(method: str, preset: str, seed: int, overrides: dict | None = None) -> str:
    """One line for the trainer's log before it asks for the encoder: where it will come from and, when
    the cache entry is missing, how long the pretraining that runs first is."""
    from nnunetv2_glrp.pretraining import make_config

    named = os.environ.get(ENCODER_ENV)
    if named:
        return f"GLRP: {method} encoder named by {ENCODER_ENV}: {named}"
    c = make_config(method, preset, seed, **(overrides or {}))
    its = c.iterations_per_epoch or "one pass over the slices"
    pools = extra_pools_from_environment()
    pooled = f", extra pools {', '.join(pools)} ({POOLS_ENV})" if pools else ""
    return (f"GLRP: {method} encoder from the pretraining cache (preset {preset!r}, seed {seed}{pooled}); if it is missing, "
            f"pretraining runs first: {c.epochs} epochs x {its} iterations of {c.batch_size} slices, lr {c.lr}")


def obtain_pretrained_encoder(
    dataset_name: str,
    configuration: str,
    method: str,
    plans_identifier: str,
    preset: str,
    device: torch.device | str,
    seed: int,
    overrides: dict | None = None,
) -> tuple[Path, str]:
    """(path of ``pretrained_encoder.pth`` for ``method``, why this one); pretrains first when the cache
    entry of ``preset``/``seed``/``overrides`` is missing, unless ``$GLRP_PRETRAINED_ENCODER`` names one."""
    from torch import distributed as dist

    from nnunetv2_glrp.pretraining import check_named_encoder, ensure_pretrained

    named = os.environ.get(ENCODER_ENV)
    if named:
        path = check_named_encoder(named, dataset_name, configuration, method, plans_identifier)
        return path, f"named by {ENCODER_ENV}"
    device_name = device.type if isinstance(device, torch.device) else str(device).split(":")[0]
    path = Path(ensure_pretrained(
        dataset_name, configuration, method=method, plans_identifier=plans_identifier,
        preset=preset, device=device_name, seed=seed, extra_pools=extra_pools_from_environment(), **(overrides or {}),
    ))
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
    if not path.is_file():
        raise FileNotFoundError(f"ensure_pretrained returned {path}, which does not exist")
    extra = f", overrides {overrides}" if overrides else ""
    if extra_pools_from_environment():
        extra += f", extra pools {', '.join(extra_pools_from_environment())}"
    return path, f"cache of preset {preset!r}, pretraining seed {seed}{extra} (set {ENCODER_ENV} to use another)"

