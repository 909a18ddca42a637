"""Dataset conversion: ACDC, Sunnybrook, user-folder and M&Ms readers, synthetic phantoms, atomic raw-dataset writer, splits."""

from __future__ import annotations

from nnunetv2_glrp.conversion.acdc_converter import convert_acdc
from nnunetv2_glrp.conversion.folder_converter import convert_folder
from nnunetv2_glrp.conversion.mnms_converter import convert_mnms
from nnunetv2_glrp.conversion.sunnybrook_converter import convert_sunnybrook

__all__ = ["convert_acdc", "convert_folder", "convert_mnms", "convert_sunnybrook"]
