"""Slice-position data for GLRP pretraining over preprocessed (labeled and unlabeled) nnU-Net cases."""

from nnunetv2_glrp.data.augmentation import ViewAugmentation, build_view_transform
from nnunetv2_glrp.data.loader import PositionStratifiedSampler, PretrainingSliceLoader, make_augmenter
from nnunetv2_glrp.data.partition_sampler import VolumePartitionSampler, volume_partition
from nnunetv2_glrp.data.positions import check_slice_axis, slice_positions
from nnunetv2_glrp.data.lean_index import SliceIndex
from nnunetv2_glrp.data.slice_index import (SliceRecord, build_slice_index, data_digest,
                                            pretraining_data_manifest)

__all__ = ["ViewAugmentation", "build_view_transform", "PositionStratifiedSampler", "PretrainingSliceLoader",
           "make_augmenter", "VolumePartitionSampler", "volume_partition", "check_slice_axis", "slice_positions", "SliceIndex", "SliceRecord", "build_slice_index",
           "data_digest", "pretraining_data_manifest"]
