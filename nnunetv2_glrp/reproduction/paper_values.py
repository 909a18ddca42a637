"""The paper's ACDC numbers that ``reproduce`` prints beside ours (never our results).

Source: Zhao et al., "GLRP: Global and local contrastive learning based on relative position for
medical image segmentation on cardiac MRI", International Journal of Imaging Systems and Technology
(IJIST) 2023, doi:10.1002/ima.22992.

* Table 1: mean Dice on ACDC test patients by pretraining method and number k of labeled patients.
* The k = 10 ablations (per-class Dice LV / MYO / RV, mean Dice, mean HD in mm). The paper gives the
  per-class Dice of PCL and of GLRP-cl + CRF only; the other rows have the mean Dice and the mean HD.
  Which of these rows belong to the paper's Table 3, 5 or 7 is this project's reading (see
  ``tables.TABLES``): 3 = the best baseline against GLRP-cl, 5 = the pretraining ablations, 7 = the
  fusion + CRF stage.

Keys are this project's method names (``registry.METHODS``); ``None`` marks a value the paper does not give.
"""

from __future__ import annotations

SOURCE = ("Zhao et al. 2023, GLRP: Global and local contrastive learning based on relative position for medical "
          "image segmentation on cardiac MRI, IJIST, doi:10.1002/ima.22992")

from nnunetv2_glrp.registry import PAPER_K_VALUES

#: Table 1, mean Dice on ACDC; one value per k of PAPER_K_VALUES (the columns)
TABLE1_DICE: dict[str, tuple[float, ...]] = {
    "Random": (0.421, 0.695, 0.758, 0.834, 0.844, 0.873, 0.906),
    "SimCLR": (0.260, 0.695, 0.771, 0.829, 0.839, 0.877, 0.910),
    "GCL": (0.310, 0.616, 0.647, 0.772, 0.812, 0.854, 0.911),
    "PCL": (0.568, 0.746, 0.801, 0.844, 0.847, 0.879, 0.912),
    "GLRP": (0.684, 0.816, 0.851, 0.864, 0.876, 0.888, 0.912),
}

#: k of the ablation rows
ABLATION_K = 10

#: k = 10 rows: {"dice": {"LV", "MYO", "RV", "mean"}, "hd": {"mean"}} (HD in mm); None = not given
ABLATIONS: dict[str, dict[str, dict[str, float | None]]] = {
    "PCL": {"dice": {"LV": 0.881, "MYO": 0.782, "RV": 0.739, "mean": 0.801}, "hd": {"mean": 17.23}},
    "GLRPLinear": {"dice": {"LV": None, "MYO": None, "RV": None, "mean": 0.829}, "hd": {"mean": 12.63}},
    "GRP": {"dice": {"LV": None, "MYO": None, "RV": None, "mean": 0.812}, "hd": {"mean": 12.67}},
    "LRP": {"dice": {"LV": None, "MYO": None, "RV": None, "mean": 0.818}, "hd": {"mean": 14.97}},
    "GLRP": {"dice": {"LV": None, "MYO": None, "RV": None, "mean": 0.851}, "hd": {"mean": 11.62}},
    "GLRP+CRF": {"dice": {"LV": 0.927, "MYO": 0.847, "RV": 0.853, "mean": 0.876}, "hd": {"mean": 26.40}},
}


def table1_value(method: str, k: int) -> float | None:
    """The paper's Table 1 mean Dice of ``method`` at ``k`` (None when the paper has no such cell)."""
    values = TABLE1_DICE.get(method)
    if values is None or k not in PAPER_K_VALUES:
        return None
    return values[PAPER_K_VALUES.index(k)]


def ablation_value(method: str, metric: str, name: str, k: int) -> float | None:
    """The paper's k = 10 value of ``metric`` ("dice"/"hd") for class ``name`` or "mean" (None: not given)."""
    if k != ABLATION_K:
        return None
    return ABLATIONS.get(method, {}).get(metric, {}).get(name)
