"""Dataset conversion: ACDC and Sunnybrook readers, synthetic phantoms, atomic raw-dataset writer, splits."""

from __future__ import annotations

from nnunetv2_glrp.conversion.acdc_converter import convert_acdc
from nnunetv2_glrp.conversion.sunnybrook_converter import convert_sunnybrook

__all__ = ["convert_acdc", "convert_sunnybrook"]
