"""The one home of the project's names: methods, trainer families, k values, file and mode names.

Pure data, no imports from the rest of the package and no third-party imports, so the CLI's argument
parsers, the trainers, the pretraining code and the reproduction engine all read the same lists
without paying for torch or nnU-Net at import. Everything else derives from here:

* ``PRETRAINING_METHODS``: what ``pretrain -m`` accepts and what ``pretraining.methods`` builds its
  loss weights and pair-weight builders from;
* ``TRAINER_FAMILIES``: the hand-written fine-tuning trainer classes (``trainers/`` defines one class
  per family, then its variants ``<Family>[_k<K>][_<recipe>][_<budget>]``; the tests' tiny trainers the same
  families at their own budget); ``CONTROL_FAMILY`` is nnU-Net's own trainer at the plugin's budgets;
* ``METHODS``: the rows of ``reproduce``, of the demo and of the few-label benchmark; a method is one
  trainer family (or, for ``GLRP+CRF``, the paper's fusion of three) plus its ``predict --crf`` mode.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PretrainingMethodSpec:
    """One pretraining loss: lambda of the global and the local term and the global term's pair weights.

    ``pair_weights``: ``slice-similarity`` (GLRP's d_ij of ``similarity_kind``), ``partner`` (SimCLR:
    the other view of the slice), ``position-threshold`` (PCL: |x_i - x_j| below the threshold),
    ``partition`` (GCL: the same partition of the volume)."""

    name: str
    lambda_global: float
    lambda_local: float
    pair_weights: str = "slice-similarity"
    similarity_kind: str = "inverse-quadratic"

    @property
    def baseline(self) -> bool:
        """0/1 pair weights (a baseline of the paper): only the soft-target formulation is defined."""
        return self.pair_weights != "slice-similarity"


PRETRAINING_METHODS: dict[str, PretrainingMethodSpec] = {m.name: m for m in (
    PretrainingMethodSpec("GLRP", 0.5, 0.5),  # GLRP-cl
    PretrainingMethodSpec("GRP", 1.0, 0.0),  # GRP-cl
    PretrainingMethodSpec("LRP", 0.0, 1.0),  # LRP-cl
    PretrainingMethodSpec("GLRPLinear", 0.5, 0.5, similarity_kind="linear"),  # GLRP-cl*
    PretrainingMethodSpec("SimCLR", 1.0, 0.0, pair_weights="partner"),
    PretrainingMethodSpec("GCL", 1.0, 0.0, pair_weights="partition"),
    PretrainingMethodSpec("PCL", 1.0, 0.0, pair_weights="position-threshold"),
)}


@dataclass(frozen=True)
class TrainerFamily:
    """A hand-written fine-tuning trainer: its class name, its pretraining method (None: random init)."""

    name: str
    pretraining: str | None
    description: str


TRAINER_FAMILIES: dict[str, TrainerFamily] = {f.name: f for f in (
    TrainerFamily("GLRPTrainer", "GLRP", "Encoder pretrained with GLRP (0.5 global + 0.5 local relative-position loss)."),
    TrainerFamily("GRPTrainer", "GRP", "Encoder pretrained with the global loss only (GRP-cl)."),
    TrainerFamily("LRPTrainer", "LRP", "Encoder pretrained with the local loss only (LRP-cl)."),
    TrainerFamily("GLRPLinearTrainer", "GLRPLinear",
                  "GLRP-cl*: slice similarity 1 - |x_i - x_j| instead of the inverse quadratic."),
    TrainerFamily("RandomInitTrainer", None,
                  "The paper's Random row: the same fine-tuning from a randomly initialised network."),
    TrainerFamily("SimCLRTrainer", "SimCLR",
                  "Baseline: encoder pretrained with SimCLR's NT-Xent (positive = the other view of the slice)."),
    TrainerFamily("GCLTrainer", "GCL",
                  "Baseline: encoder pretrained with GCL's global loss G^D (positives = same partition of other volumes)."),
    TrainerFamily("PCLTrainer", "PCL",
                  "Baseline: encoder pretrained with PCL (positives = slices closer than the position threshold)."),
)}
#: nnU-Net's own ``nnUNetTrainer`` with only a budget applied (``finetuning.nnunet_control``): no k, no recipe
CONTROL_FAMILY = "NnunetControlTrainer"


@dataclass(frozen=True)
class Method:
    """A row of a table: this project's name (``--methods``), the paper's label, its trainer families."""

    name: str
    label: str
    families: tuple[str, ...]
    crf: str = "off"  # predict --crf

    @property
    def control(self) -> bool:
        """nnU-Net's own trainer: draws no patients; the engine hands it the k drawn patients as a fold."""
        return self.families == (CONTROL_FAMILY,)


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("nnU-Net", "nnU-Net", (CONTROL_FAMILY,)),
    Method("Random", "Random", ("RandomInitTrainer",)),
    Method("SimCLR", "SimCLR", ("SimCLRTrainer",)),
    Method("GCL", "GCL", ("GCLTrainer",)),
    Method("PCL", "PCL", ("PCLTrainer",)),
    Method("GLRPLinear", "GLRP-cl*", ("GLRPLinearTrainer",)),
    Method("GRP", "GRP-cl", ("GRPTrainer",)),
    Method("LRP", "LRP-cl", ("LRPTrainer",)),
    Method("GLRP", "GLRP-cl", ("GLRPTrainer",)),
    Method("GLRP+CRF", "GLRP-cl + CRF", ("GLRPTrainer", "GRPTrainer", "LRPTrainer"), crf="on"),
)}
#: every table compares each method with this one on the same draws
REFERENCE = "Random"

#: how the run engine pretrains the pretrained rows of its seeds: one encoder for all ("shared") or seed S's rows from
#: pretraining seed S ("per-seed"; ``reproduction.training``)
PRETRAINING_SEEDS: tuple[str, ...] = ("shared", "per-seed")

#: numbers of labeled patients of the paper's Table 1 (ACDC), and of the generated ``_k<K>`` trainers
PAPER_K_VALUES: tuple[int, ...] = (2, 6, 10, 15, 20, 30, 105)

#: written by every fine-tuning trainer of the plugin (and the control trainer) into its fold folder
SETUP_FILE = "glrp_finetuning.json"

#: ``predict --crf``: auto = the registered post-processing (``crf.json``), on = the paper's CRF, off = none
CRF_MODES: tuple[str, ...] = ("auto", "on", "off")
