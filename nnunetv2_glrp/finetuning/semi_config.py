"""Settings of the ``_semi`` recipe: weak-to-strong consistency on the unlabeled cine frames (after UniMatch).

Pure data (no torch): :class:`SemiSupervisedConfig` is the ``semi`` field of a
:class:`~nnunetv2_glrp.finetuning.recipes.FineTuningRecipe` and is written with it into ``glrp_finetuning.json``.
Defaults follow UniMatch (Yang et al., CVPR 2023) where it has a value (threshold 0.95, loss weights 0.25 / 0.25 /
0.5 for the two strong views and the feature-perturbed pass, CutMix p = 0.5 with its box sizes, blur p = 0.5 with
sigma in [0.1, 2], channel dropout 0.5 on the encoder features); the rest is our choice (docs/trainers.md, "_semi").
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SemiSupervisedConfig:
    #: pixels whose teacher max softmax is above this become pseudo-labels (> 1: none, the unlabeled loss is 0)
    threshold: float = 0.95
    #: unlabeled slices per iteration and rank; None: half the labeled batch (at least 2, so CutMix has a partner)
    unlabeled_batch_size: int | None = None
    #: weight of the unlabeled loss once ramped up (the supervised loss keeps weight 1: nnU-Net's loss unchanged)
    loss_weight: float = 1.0
    #: the weight ramps up as exp(-5 (1 - t)^2) over this fraction of all iterations (Laine & Aila 2017); 0: none
    rampup_fraction: float = 0.2
    #: weights of the unlabeled terms: strong view 1, strong view 2, feature-perturbed pass (UniMatch's)
    strong_weights: tuple[float, float] = (0.25, 0.25)
    feature_perturbation_weight: float = 0.5
    #: channel dropout (Dropout2d) probability on every encoder skip feature in the feature-perturbed pass
    feature_dropout: float = 0.5
    # ---- weak view: nnU-Net-style spatial augmentation (nnU-Net 2D defaults: p 0.2 rotation / scaling) ----
    p_rotation: float = 0.2
    rotation: tuple[float, float] = (-3.141592653589793, 3.141592653589793)
    p_scaling: float = 0.2
    scaling: tuple[float, float] = (0.7, 1.4)
    p_mirror: float = 0.5  # per in-plane axis
    # ---- strong views (each drawn independently from the weak view) ----
    p_intensity: float = 0.8  # intensity jitter (the grey-value form of UniMatch's colour jitter)
    brightness: float = 0.5  # additive shift uniform in [-b, b] (z-scored images: units of the image's std)
    contrast: float = 0.5  # (x - mean) * c + mean, c uniform in [1 - c, 1 + c]
    gamma: tuple[float, float] = (0.7, 1.5)  # on the min-max rescaled slice, then mapped back
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # pixels
    p_cutmix: float = 0.5
    cutmix_area: tuple[float, float] = (0.02, 0.4)  # box area as a fraction of the patch
    cutmix_ratio: tuple[float, float] = (0.3, 1 / 0.3)  # box aspect ratio
    #: seed of the unlabeled stream and the dropout masks, combined with GLRP_SEED, the rank and the iteration
    seed: int = 0
    #: batches prepared ahead by the background thread
    prefetch: int = 2

    def __post_init__(self):
        checks = {
            "threshold must be >= 0": self.threshold >= 0,
            "unlabeled_batch_size must be >= 1": self.unlabeled_batch_size is None or self.unlabeled_batch_size >= 1,
            "loss_weight must be >= 0": self.loss_weight >= 0,
            "rampup_fraction must lie in [0, 1]": 0.0 <= self.rampup_fraction <= 1.0,
            "feature_dropout must lie in [0, 1)": 0.0 <= self.feature_dropout < 1.0,
            "probabilities must lie in [0, 1]": all(0.0 <= p <= 1.0 for p in (
                self.p_rotation, self.p_scaling, self.p_mirror, self.p_intensity, self.p_blur, self.p_cutmix)),
            "cutmix_area must satisfy 0 < low <= high <= 1": 0 < self.cutmix_area[0] <= self.cutmix_area[1] <= 1,
            "prefetch must be >= 1": self.prefetch >= 1,
        }
        bad = [message for message, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"semi-supervised settings: {bad[0]}")

    def unlabeled_batch(self, labeled_batch_size: int) -> int:
        """Unlabeled slices per iteration and rank for a rank's labeled batch size."""
        if self.unlabeled_batch_size is not None:
            return self.unlabeled_batch_size
        return max(2, (labeled_batch_size + 1) // 2)
