"""Pretraining hyperparameters: one frozen dataclass with the paper's defaults, presets, methods, hash.

Paper: SGD lr 0.1, momentum 0.9, cosine schedule, batch 12 slices (24 views), 200 epochs, tau 0.1,
a = 15, 512-d projections. Where the paper is silent we chose: weight decay 1e-4 (SimCLR-style
pretraining value), gradient-norm clipping at 12 (nnU-Net's trainer value; guards lr 0.1 against the
first steps of randomly initialised heads), cosine annealed per iteration to 0 with no warm-up,
``iterations_per_epoch=None`` = one pass over the pretraining slices (ceil(n_slices / batch_size)), the
soft-target InfoNCE (see docs/method.md), PSM weights (1 + SSIM) / 2 (``psm_mapping="affine"``) over the input
boxes of the local stage's patches compared at ``psm_patch_size`` px (None = the box size), and the local
stage chosen by feature-map size (None = deepest stage with a feature map of at least 9 x 9), and the heads
reading each stage before its last norm (``feature_tap="pre-norm"``: nnU-Net's InstanceNorm erases the
per-image channel means that average pooling needs; ``"output"`` reads the stage outputs, see models/taps.py).

PSM cross-class pairs (centre/edge/corner patches of different classes): weight 0 with the default
soft-target loss (they stay negatives; see ``similarity.patch_similarity``). ``formulation="paper-literal"``
takes the log of every pair weight and needs them all strictly positive, so with it the LRP term's PSM
gives cross-class pairs their orientation-free SSIM (``cross_class="ssim"``) and the mapping must be
``"affine"`` ((1 + SSIM) / 2 > 0; ``"clamp"`` gives zeros and is refused). ``psm_cross_class`` says which.

Baselines (``pretraining.methods``): ``pcl_threshold`` (PCL's positive pairs, 0.35 as on ACDC in the PCL paper)
and ``gcl_partitions`` (GCL's partitions per volume, 4; the batch size must be a multiple). They need the
soft-target formulation (their 0/1 weights have no logarithm). Fields added after the first release
(``ADDED_FIELDS``) enter the digest only when they differ from the value that reproduces what runs before them did
(their default, or for ``feature_tap`` the old behaviour "output"), so existing caches keep their names and an
encoder pretrained on the stage outputs is never taken for one of the new pre-norm default.

``psm_location`` says where the PSM is computed (data workers or training device, see ``PSM_LOCATIONS``): the same
function on the same views, so it is an execution setting and never enters the digest (on a GPU the float32 SSIM
may differ from the CPU's in the last bits; tests/test_pretraining.py checks equality on the CPU).

``compile`` ("none" or a ``torch.compile`` mode, see ``pretraining.compiling``) compiles the encoder's forward of the
step. Also an execution setting, never in the digest: the compiled graph computes the same functions of the same
parameters, differing only in float rounding (fused kernels, other accumulation orders), as ``psm_location`` on a
GPU does; an encoder pretrained compiled is the encoder pretrained eagerly, so it shares its cache entry (and a run
started compiled may resume eagerly). ``autocast`` and ``channels_last`` are recorded in the digest when not at
their defaults (ADDED_FIELDS): reduced precision changes the numbers beyond rounding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from nnunetv2_glrp.data.augmentation import ViewAugmentation
from nnunetv2_glrp.models.taps import FEATURE_TAPS
from nnunetv2_glrp.pretraining.compiling import COMPILE_MODES
from nnunetv2_glrp.pretraining.methods import PRETRAINING_METHODS

METHODS = tuple(PRETRAINING_METHODS)
#: fields added after the first release -> the value every run before them had; left out of the digest at that
#: value (cache names stay valid for the same computation, and change where the computation changed)
ADDED_FIELDS = {"pcl_threshold": 0.35, "gcl_partitions": 4, "feature_tap": "output", "autocast": "none",
                "channels_last": False}
#: generation of the data pipeline where it changes the views a config produces (the code's, not a config field):
#: 1: one augmentation stream per loader; 2: each slice's two views seeded from (a word drawn per batch, the slice's
#: place in the global batch), so that N ranks augment a slice exactly as one process does (pretraining.distributed).
#: Enters the digest from 2 on: an encoder cached by generation 1 is not what this code would pretrain, so it is not
#: reused under the same name (the same rule as ADDED_FIELDS).
VIEW_SEEDING_GENERATION = 2
#: ``autocast``: the network's forward and backward under torch.autocast in bfloat16 ("bf16"), in float16 with a
#: gradient scaler ("fp16", for GPUs without bf16 such as the V100; see pretraining.step), or not ("none"); the losses
#: always run in float32 on float32 copies of the embeddings. Changes the numbers, so in the digest when not "none"
#: (bf16 and fp16 are different arithmetic, so they give different keys).
AUTOCAST = ("none", "bf16", "fp16")
#: where or how the computation runs, not what it computes: never in the digest (same cached encoder wherever the
#: PSM ran, and whether or not the encoder's forward was compiled)
EXECUTION_FIELDS = ("psm_location", "compile")
#: ``psm_location``: "loader" (the data workers, with the augmentation), "device" (the training device, inside the
#: step, on the views already moved there), "auto" (the device when it is a GPU, else the loader)
PSM_LOCATIONS = ("auto", "loader", "device")


@dataclass(frozen=True)
class PretrainingConfig:
    method: str = "GLRP"
    lambda_global: float = 0.5
    lambda_local: float = 0.5
    similarity_kind: str = "inverse-quadratic"
    formulation: str = "soft-target"
    a: float = 15.0
    tau: float = 0.1
    psm_mapping: str = "affine"
    psm_patch_size: int | None = None
    epochs: int = 200
    iterations_per_epoch: int | None = None
    batch_size: int = 12
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 12.0
    local_stage: int | None = None
    projection_dim: int = 512
    hidden_dim: int = 512
    head_pooling: str = "mean-std-max"  # "mean": the paper's head (see models/heads.py)
    feature_tap: str = "pre-norm"  # "output": the stage outputs, after the norm (see models/taps.py)
    grid: int = 3
    seed: int = 0
    augmentation: ViewAugmentation = ViewAugmentation()
    pcl_threshold: float = 0.35
    gcl_partitions: int = 4
    psm_location: str = "auto"
    autocast: str = "none"
    channels_last: bool = False
    compile: str = "none"

    def __post_init__(self) -> None:
        if self.compile not in COMPILE_MODES:
            raise ValueError(f"compile must be one of {COMPILE_MODES}, got {self.compile!r}")
        if self.autocast not in AUTOCAST:
            raise ValueError(f"autocast must be one of {AUTOCAST}, got {self.autocast!r}")
        if self.psm_location not in PSM_LOCATIONS:
            raise ValueError(f"psm_location must be one of {PSM_LOCATIONS}, got {self.psm_location!r}")
        if self.method not in METHODS:
            raise ValueError(f"unknown pretraining method {self.method!r}; choose one of {METHODS}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.iterations_per_epoch is not None and self.iterations_per_epoch < 1:
            raise ValueError(f"iterations_per_epoch must be >= 1 or None, got {self.iterations_per_epoch}")
        if self.batch_size < 2:
            raise ValueError("batch_size must be >= 2 slices: the relative-position losses contrast slices")
        if self.head_pooling not in ("mean-std-max", "mean"):
            raise ValueError(f"head_pooling must be 'mean-std-max' or 'mean', got {self.head_pooling!r}")
        if self.feature_tap not in FEATURE_TAPS:
            raise ValueError(f"feature_tap must be one of {FEATURE_TAPS}, got {self.feature_tap!r}")
        if self.formulation == "paper-literal" and self.lambda_local > 0 and self.psm_mapping != "affine":
            raise ValueError(f"formulation='paper-literal' with a local (LRP) term needs psm_mapping='affine' "
                             f"(strictly positive PSM weights), got {self.psm_mapping!r}")
        self._check_baseline()

    def _check_baseline(self) -> None:
        method = PRETRAINING_METHODS[self.method]
        if method.baseline and self.formulation != "soft-target":
            raise ValueError(f"{self.method} uses 0/1 pair weights: only formulation='soft-target' is defined for it, "
                             f"got {self.formulation!r}")
        if not self.pcl_threshold > 0 or self.gcl_partitions < 1:
            raise ValueError(f"pcl_threshold must be > 0 and gcl_partitions >= 1, got {self.pcl_threshold}, "
                             f"{self.gcl_partitions}")
        if method.volume_partitions and self.batch_size % self.gcl_partitions:
            raise ValueError(f"{self.method} batches hold whole volumes: batch_size {self.batch_size} must be a multiple "
                             f"of gcl_partitions {self.gcl_partitions}")

    @property
    def psm_cross_class(self) -> str:
        """``cross_class`` of the PSM: "ssim" for the paper-literal loss (no zero weights), else "zero"."""
        return "ssim" if self.formulation == "paper-literal" else "zero"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of every field (seed included): the cache key of the output folder."""
        fields = {k: v for k, v in self.to_dict().items()
                  if not (k in ADDED_FIELDS and v == ADDED_FIELDS[k]) and k not in EXECUTION_FIELDS}
        if VIEW_SEEDING_GENERATION != 1:
            fields["view_seeding_generation"] = VIEW_SEEDING_GENERATION
        text = json.dumps(fields, sort_keys=True, default=list)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


#: preset name -> config. A preset's name is no config field and so enters neither ``digest`` nor the cache folder's
#: name (pretraining.api.folder_for_config): renaming a preset ("paper" became "full", the preset of the ``full``
#: fine-tuning budget) keeps every cache entry pretrained with it (tests/test_pretraining.py pins the digest).
PRESETS: dict[str, PretrainingConfig] = {
    "full": PretrainingConfig(),  # the paper's pretraining (200 epochs, batch 12), our choices where it is silent
    # PSM patches compared at 24 px instead of the ~43 px boxes: 13x cheaper on one CPU thread (0.24 s vs
    # 3.1 s per 24-view batch of the small plan), which keeps the data loader ahead of the model step
    # 30 x 50 iterations of 8 slices: 8-13 min on the 2-core CPU (nnunet_cpu plan, 0.3-0.5 s per iteration). On
    # the 30-patient realistic phantom the GRP term sits at the collapse line for ~400 iterations and only then
    # falls below it (excess over its floor 0.19 after 300 iterations, 0.08 after 1,500, collapse 0.21), the
    # slice position a linear probe reads off the frozen bottleneck goes from R^2 0.16 (300) to 0.69 (1,500), and
    # a 300-iteration encoder fine-tuned no better than a random one while this preset's did (README, "Few-label
    # benchmark"; benchmarks/bench_linear_probe.py). Until 2026-12 the preset was 8 x 10.
    "cpu": PretrainingConfig(epochs=30, iterations_per_epoch=50, batch_size=8, psm_patch_size=24),
}


def make_config(method: str = "GLRP", preset: str = "cpu", seed: int = 0, **overrides) -> PretrainingConfig:
    """The preset with the method's loss weights and similarity kind, the seed and ``overrides`` applied."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if method not in METHODS:
        raise ValueError(f"unknown pretraining method {method!r}; choose one of {METHODS}")
    w = PRETRAINING_METHODS[method].loss_weights
    fields = {f.name for f in dataclasses.fields(PretrainingConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"unknown pretraining config fields {unknown}; valid: {sorted(fields)}")
    if isinstance(overrides.get("augmentation"), dict):
        overrides["augmentation"] = ViewAugmentation(**overrides["augmentation"])
    return dataclasses.replace(PRESETS[preset], method=method, lambda_global=w.lambda_global,
                               lambda_local=w.lambda_local, similarity_kind=w.similarity_kind, seed=int(seed),
                               **overrides)
