"""5. Post-processing: dense CRF on the probabilities, fusion of several models, registration and prediction.

pydensecrf and nnU-Net are imported inside the functions that use them.
"""

from nnunetv2_glrp.postprocessing.components import largest_component_per_class
from nnunetv2_glrp.postprocessing.crf import (
    LARGEST_COMPONENT_ONLY, NO_CRF, PAPER_SETTING, CRFSetting, crf_slice, mm_to_pixels, postprocess, scale_intensities,
)

__all__ = [
    "CRFSetting", "NO_CRF", "LARGEST_COMPONENT_ONLY", "PAPER_SETTING", "crf_slice", "mm_to_pixels", "postprocess",
    "scale_intensities", "largest_component_per_class",
]
