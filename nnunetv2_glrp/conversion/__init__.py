"""Dataset conversion: ACDC reader, synthetic phantom, atomic raw-dataset writer, patient-level splits."""

from __future__ import annotations

from nnunetv2_glrp.conversion.acdc_converter import convert_acdc

__all__ = ["convert_acdc"]
