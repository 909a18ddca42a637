"""The one image reader: a truncated or corrupt NIfTI file is an error naming the file, never zeros."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.image_io import ImageFileError, check_complete, geometry_mismatch, read_image


def _image(shape=(6, 40, 40), dtype=np.int16, seed=0) -> sitk.Image:
    array = np.random.default_rng(seed).integers(0, 1000, size=shape).astype(dtype)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.25, 1.25, 8.0))
    return image


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_complete_file_reads_back_exactly(tmp_path, suffix):
    path = tmp_path / f"a{suffix}"
    sitk.WriteImage(_image(), str(path))
    assert check_complete(path) == 6 * 40 * 40
    assert np.array_equal(sitk.GetArrayFromImage(read_image(path)), sitk.GetArrayFromImage(_image()))


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_first_half_of_a_file_is_an_error_naming_it(tmp_path, suffix):
    full, half = tmp_path / f"full{suffix}", tmp_path / f"half{suffix}"
    sitk.WriteImage(_image(), str(full), useCompression=True)
    data = full.read_bytes()
    half.write_bytes(data[: len(data) // 2])
    # what the reader guards against: SimpleITK itself reads the half file (missing voxels become zeros)
    assert sitk.ReadImage(str(half)).GetSize() == (40, 40, 6)
    with pytest.raises(ImageFileError, match=rf"{half.name}: .*incomplete"):
        read_image(half)


def test_complete_gzip_of_a_short_nifti_is_an_error(tmp_path):
    """The gzip stream ends properly but holds fewer voxels than the header says."""
    plain = tmp_path / "a.nii"
    sitk.WriteImage(_image(), str(plain))
    data = plain.read_bytes()
    short = tmp_path / "short.nii.gz"
    short.write_bytes(gzip.compress(data[: len(data) - 100]))
    with pytest.raises(ImageFileError, match=r"short.nii.gz: holds \d+ bytes of NIfTI data, its header needs"):
        read_image(short)


def test_corrupt_gzip_and_not_nifti(tmp_path):
    good = tmp_path / "good.nii.gz"
    sitk.WriteImage(_image(), str(good), useCompression=True)
    data = bytearray(good.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad = tmp_path / "flipped.nii.gz"
    bad.write_bytes(bytes(data))
    with pytest.raises(ImageFileError, match="flipped.nii.gz: truncated or corrupt gzip stream"):
        read_image(bad)
    text = tmp_path / "text.nii.gz"
    text.write_bytes(gzip.compress(b"hello, this is not an image" * 30))
    with pytest.raises(ImageFileError, match="text.nii.gz: not a NIfTI-1/2 file"):
        read_image(text)


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.nii.gz: image file not found"):
        read_image(tmp_path / "nothing.nii.gz")
    with pytest.raises(FileNotFoundError, match="it is a folder"):
        read_image(tmp_path)


def test_geometry_mismatch_names_origin_and_direction():
    a, b = _image(), _image()
    assert geometry_mismatch(a, b) is None
    b.SetOrigin((0.0, 0.0, 3.0))
    assert geometry_mismatch(a, b).startswith("origin")
    c = _image()
    c.SetDirection((0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    assert geometry_mismatch(a, c).startswith("direction")


@pytest.mark.parametrize("chunk", [1 << 22, 7])  # 7 bytes: voxels and the header split across reads
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nan_and_inf_voxels_are_an_error(tmp_path, dtype, suffix, chunk, monkeypatch):
    from nnunetv2_glrp import image_io

    monkeypatch.setattr(image_io, "_CHUNK", chunk)
    array = np.ones((3, 50, 50), dtype)
    array[2, 49, 48], array[0, 0, 0] = np.nan, -np.inf  # the last voxels too: chunk and item boundaries
    path = tmp_path / f"a{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    # what the reader guards against: SimpleITK reads NaN and inf as 0
    assert np.isfinite(sitk.GetArrayFromImage(sitk.ReadImage(str(path)))).all()
    with pytest.raises(ImageFileError, match=f"a{suffix}: has 2 NaN or infinite voxels"):
        read_image(path)
    finite = tmp_path / f"finite{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.linspace(-1e30, 1e30, 7500, dtype=dtype).reshape(3, 50, 50)),
                    str(finite))
    assert check_complete(finite) == 7500


def test_tiny_float_file_is_scanned_too(tmp_path):
    array = np.array([[[1.0, np.nan]]], np.float32)
    path = tmp_path / "tiny.nii"
    sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
    assert path.stat().st_size < 540
    with pytest.raises(ImageFileError, match="has 1 NaN"):
        read_image(path)
