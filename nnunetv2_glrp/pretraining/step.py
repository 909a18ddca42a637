"""One pretraining SGD step, with an honest split of its time between the network and the loss functions.

The autograd graph is cut at the projected embeddings: the losses are computed on detached leaf copies
``z.detach().requires_grad_()``, their backward yields dL/dz, and ``torch.autograd.backward(z, dL/dz)``
then runs the network's backward. By the chain rule the parameter gradients are the ones of a single
``loss.backward()``; the cut only lets us time the loss functions' forward AND backward on their own.
The PSM is not part of the timed step: the data loader computes it, or (``psm_fn`` given, ``psm_location`` "device")
the step computes it on the training device from the views already there, before the forward pass; either way its
seconds are reported separately (``StepTimer.psm``).
Distributed (``group`` of N ranks, see ``distributed``): the pooled features entering the projection heads (so the
embeddings, and the heads' BatchNorm statistics, are those of the global batch), the positions, partitions and PSM
input views of the local shard are gathered into the global batch, every rank computes the global loss, and the parameter
gradients are averaged over the ranks before clipping, so the update is the single-process update on the global batch.
Mixed precision (``config.autocast``): the network's forward and backward run under ``torch.autocast`` in bfloat16
("bf16") or float16 ("fp16"); the losses always run in float32 on float32 leaf copies of the embeddings. fp16 takes a
``torch.amp.GradScaler`` owned by the run (``loop``; its state is in the checkpoint): since the backward is split,
the scale multiplies dL/dz handed to the network's backward (not a ``loss.backward()``); the parameter gradients are
then averaged over the ranks (linear, so scaled or not does not matter; an inf/nan on any rank reaches every rank, so
all ranks skip together), unscaled, clipped (on the true gradients), and ``scaler.step`` / ``scaler.update`` make or
skip the update: a step with an inf/nan gradient leaves every parameter and the momentum unchanged and halves the
scale (``backoff_factor``). The learning-rate schedule still advances on a skipped step (``epoch.run_epoch`` steps
the scheduler after every step, as nnU-Net and PyTorch's AMP recipe do): a skipped step costs its iteration's share
of the schedule. A non-finite LOSS (fp16 overflow in the forward, which a smaller scale cannot cure) still raises.
"""

from __future__ import annotations

import math
import time

import torch

from nnunetv2_glrp.losses import (glrp_loss, local_pair_weights, relative_position_loss, slice_similarity,
                                  soft_target_entropy)
from nnunetv2_glrp.models import encoder_features
from nnunetv2_glrp.patch_grid import patch_view_index
from nnunetv2_glrp.pretraining.config import PretrainingConfig
from nnunetv2_glrp.pretraining.distributed import SINGLE, RankGroup
from nnunetv2_glrp.pretraining.methods import global_pair_weights


class StepTimer:
    """Accumulated wall time (cuda-synchronised) of the model steps and of the parts inside them.

    ``step``: whole step (forward, backward, clipping, optimizer); ``loss_forward`` / ``loss_backward``:
    the loss functions alone, from the embeddings to the loss and from the loss back to the embeddings;
    ``loss`` = their sum; ``psm``: PSM seconds, of the data loader or on the device (outside ``step``)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.step = self.loss_forward = self.loss_backward = self.psm = 0.0

    @property
    def loss(self) -> float:
        return self.loss_forward + self.loss_backward

    @property
    def loss_share(self) -> float:
        """Fraction of the model step spent in the loss functions (forward + backward)."""
        return self.loss / self.step if self.step > 0 else float("nan")

    def now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return time.perf_counter()


#: config.autocast -> the autocast dtype of the network (None: float32, no autocast)
AUTOCAST_DTYPES = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _leaf(z: torch.Tensor | None) -> torch.Tensor | None:
    """Float32 leaf copy of the embeddings: the losses always run in float32 (also under autocast)."""
    return None if z is None else z.detach().float().requires_grad_()


def training_step(network, heads, batch: dict, config: PretrainingConfig, optimizer, device: torch.device,
                  timer: StepTimer | None = None, psm_fn=None, group: RankGroup = SINGLE,
                  features=None, scaler: torch.amp.GradScaler | None = None) -> dict[str, float]:
    """One SGD step on one batch; returns the loss terms (floats), as ``grp_excess``/``lrp_excess`` each
    term minus its floor (the entropy of its soft targets, :func:`soft_target_entropy`), and as
    ``grp_collapse_excess``/``lrp_collapse_excess`` the excess that collapsed embeddings would have (all
    equal: every similarity 1, so the softmax is uniform and the loss ln(n - 1) for n embeddings). An
    excess near the collapse excess means the embeddings do not yet tell the slices (patches) apart.

    batch: ``data`` [2N, C, H, W], ``positions`` [2N], ``psm`` [g^2 2N, g^2 2N] (g = config.grid; None
    without LRP, or when ``psm_fn`` computes it here on ``device`` from the views), ``partitions`` [2N] (GCL only).
    ``grp`` is the global term of any method. Under ``group`` of N ranks the batch is the local shard and the PSM must
    come from ``psm_fn`` (over the gathered global views); the returned losses are those of the global batch.
    ``features``: ``x -> encoder stage features`` (``compiling.feature_function``, compiled when ``config.compile``
    says so; built once per run by the caller); default: ``encoder_features`` of ``network``, eager.
    ``scaler``: the run's gradient scaler, required with ``config.autocast == "fp16"`` (see the module docstring);
    ``skipped`` in the result is 1.0 when it skipped the update (inf/nan gradients), else 0.0."""
    if (config.autocast == "fp16") != (scaler is not None):
        raise ValueError(f"autocast {config.autocast!r}: a GradScaler is needed with fp16 and only with it, got "
                         f"scaler={scaler!r}")
    x = batch["data"].to(device, non_blocking=True)
    pos = group.gather(batch["positions"].to(device, non_blocking=True))
    if batch.get("partitions") is not None:
        batch = dict(batch, partitions=group.gather(batch["partitions"].to(device, non_blocking=True)))
    clock = timer.now if timer else (lambda: 0.0)
    psm = batch.get("psm")
    if group.world > 1 and psm is not None:
        raise ValueError("a distributed step computes the PSM over the gathered global batch: pass psm_fn, not a "
                         "loader PSM of the local shard")
    if psm is None and psm_fn is not None and config.lambda_local > 0:
        tp = clock()
        psm = psm_fn(group.gather(x[:, 0]))
        if timer:
            timer.psm += clock() - tp
    t0 = clock()
    optimizer.zero_grad(set_to_none=True)
    if config.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    dtype = AUTOCAST_DTYPES[config.autocast]
    with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
        feats = features(x) if features is not None else encoder_features(network, x, config.feature_tap)
        z_g, z_l = heads(feats, use_global=config.lambda_global > 0, use_local=config.lambda_local > 0,
                         gather=group.gather if group.world > 1 else None)  # global-batch embeddings
    leaf_g, leaf_l = _leaf(z_g), _leaf(z_l)
    t1 = clock()
    l_grp = l_lrp = None
    floors = {"grp": float("nan"), "lrp": float("nan")}  # soft-target loss floors (target entropies)
    collapsed = {"grp": float("nan"), "lrp": float("nan")}  # the loss of identical embeddings, ln(n - 1)
    d = slice_similarity(pos, a=config.a, kind=config.similarity_kind)
    if leaf_g is not None:  # the method's global term: GLRP's d_ij, or a baseline's 0/1 weights (methods.py)
        w_g = global_pair_weights(config, pos, batch)
        l_grp = relative_position_loss(leaf_g, w_g, tau=config.tau, formulation=config.formulation)
        floors["grp"] = _floor(w_g, config)
        collapsed["grp"] = math.log(leaf_g.shape[0] - 1)
    if leaf_l is not None:
        if psm is None:
            raise ValueError("the LRP term needs the PSM: the batch has none and no psm_fn was given")
        w = local_pair_weights(psm.to(device, non_blocking=True), patch_view_index(pos.shape[0], config.grid),
                               d)
        l_lrp = relative_position_loss(leaf_l, w, tau=config.tau, formulation=config.formulation)
        floors["lrp"] = _floor(w, config)
        collapsed["lrp"] = math.log(leaf_l.shape[0] - 1)
    loss = glrp_loss(l_grp, l_lrp, (config.lambda_global, config.lambda_local))
    t2 = clock()
    if not torch.isfinite(loss):
        raise FloatingPointError(f"pretraining loss is {loss.item()} (keys {batch['keys'][:3]}...)")
    loss.backward()
    t3 = clock()
    scale = scaler.scale if scaler is not None else (lambda g: g)  # dL/dz times the loss scale (fp16)
    pairs = [(z, scale(leaf.grad).to(z.dtype)) for z, leaf in ((z_g, leaf_g), (z_l, leaf_l))
             if z is not None and leaf.grad is not None]
    torch.autograd.backward([z for z, _ in pairs], [g for _, g in pairs])
    skipped = apply_gradients(optimizer, config.grad_clip, group, scaler)
    if timer:
        timer.step += clock() - t0
        timer.loss_forward += t2 - t1
        timer.loss_backward += t3 - t2
        timer.psm += float(batch.get("psm_seconds", 0.0))
    grp = float("nan") if l_grp is None else l_grp.item()
    lrp = float("nan") if l_lrp is None else l_lrp.item()
    return {"loss": loss.item(), "grp": grp, "lrp": lrp, "grp_excess": grp - floors["grp"],
            "lrp_excess": lrp - floors["lrp"], "grp_collapse_excess": collapsed["grp"] - floors["grp"],
            "lrp_collapse_excess": collapsed["lrp"] - floors["lrp"], "skipped": skipped}


def apply_gradients(optimizer, grad_clip: float, group: RankGroup = SINGLE,
                    scaler: torch.amp.GradScaler | None = None) -> float:
    """The update from the parameters' gradients (scaled by ``scaler``'s scale under fp16): average them over the
    ranks, unscale (fp16), clip to norm ``grad_clip``, step; returns 1.0 when the scaler skipped the step (an inf/nan
    gradient on any rank: the average carries it to every rank, so all ranks skip and halve their scale alike; this
    is why the unscaling, which looks for them, comes after the averaging)."""
    params = [p for g in optimizer.param_groups for p in g["params"]]
    group.average_gradients(params)  # scaled gradients under fp16: averaging commutes with the scale
    if scaler is None:
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
        optimizer.step()
        return 0.0
    scaler.unscale_(optimizer)  # before clipping: clip the true gradients, not the scaled ones
    torch.nn.utils.clip_grad_norm_(params, grad_clip)
    before = scaler.get_scale()
    scaler.step(optimizer)  # skipped when unscale_ found an inf/nan gradient
    scaler.update()
    return float(scaler.get_scale() < before)  # the scale drops exactly on a skipped step


def _floor(weights: torch.Tensor, config: PretrainingConfig) -> float:
    """Target entropy of the soft-target loss for these pair weights (NaN for the paper-literal loss,
    whose floor is not a target entropy): loss minus floor is the KL divergence still to remove."""
    if config.formulation != "soft-target":
        return float("nan")
    return soft_target_entropy(weights).item()
