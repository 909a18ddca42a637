"""Fusion of probabilities and the nnU-Net probability export reader: known answers and bad inputs."""

from __future__ import annotations

from dataclasses import asdict

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.postprocessing.fusion import check_probabilities, fuse_probabilities
from nnunetv2_glrp.postprocessing.volumes import (
    Geometry, read_geometry, read_image, read_probabilities, write_label_map, write_probabilities,
)


def _random_probs(shape, seed):
    logits = np.random.default_rng(seed).normal(size=shape)
    e = np.exp(logits)
    return (e / e.sum(0)).astype(np.float32)


def test_fusion_is_the_mean_of_the_probabilities():
    a, b = _random_probs((4, 2, 5, 6), 0), _random_probs((4, 2, 5, 6), 1)
    fused = fuse_probabilities([a, b], "c1")
    for index in [(0, 0, 0, 0), (3, 1, 4, 5), (2, 1, 2, 3)]:
        assert fused[index] == pytest.approx((a[index] + b[index]) / 2, abs=1e-6)
    weighted = fuse_probabilities([a, b], "c1", weights=[3, 1])
    assert np.allclose(weighted, 0.75 * a + 0.25 * b, atol=1e-6)
    assert np.allclose(fuse_probabilities([a], "c1"), a)


def test_fusion_errors_name_the_case_and_the_model():
    a = _random_probs((4, 2, 5, 6), 0)
    with pytest.raises(ValueError, match=r"case p7_ED: GRP has 3 classes, GLRP has 4"):
        fuse_probabilities([a, _random_probs((3, 2, 5, 6), 1)], "p7_ED", names=["GLRP", "GRP"])
    with pytest.raises(ValueError, match=r"case p7_ED: GRP probabilities have shape \(4, 2, 5, 7\)"):
        fuse_probabilities([a, _random_probs((4, 2, 5, 7), 1)], "p7_ED", names=["GLRP", "GRP"])
    with pytest.raises(ValueError, match="one positive weight per model"):
        fuse_probabilities([a, a], "p7_ED", weights=[1, 0])


@pytest.mark.parametrize("corrupt, message", [
    (lambda p: p.__setitem__((0, 0, 0, 0), np.nan), "non-finite"),
    (lambda p: p.__setitem__((slice(0, 2), 0, 0, 0), [-0.1, p[0, 0, 0, 0] + p[1, 0, 0, 0] + 0.1]), "negative"),
    (lambda p: p.__imul__(0.9), "do not sum to 1"),
])
def test_bad_probabilities_are_refused(corrupt, message):
    p = _random_probs((4, 2, 5, 6), 0)
    check_probabilities(p, "ok")
    corrupt(p)
    with pytest.raises(ValueError, match=rf"case p3_ES.*{message}"):
        check_probabilities(p, "p3_ES")


def _write_image(path, shape=(3, 8, 9), spacing=(1.25, 1.5, 8.0), origin=(1.0, 2.0, 3.0)):
    image = sitk.GetImageFromArray(np.arange(np.prod(shape), dtype=np.float32).reshape(shape))
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    sitk.WriteImage(image, str(path))
    return read_image(path)


def test_probability_export_round_trip_and_geometry_checks(tmp_path):
    array, geometry = _write_image(tmp_path / "img.nii.gz")
    assert geometry.array_spacing == (8.0, 1.5, 1.25) and read_geometry(tmp_path / "img.nii.gz") == (array.shape,
                                                                                                     geometry)
    probs = _random_probs((4, *array.shape), 0)
    properties = {"sitk_stuff": asdict(geometry), "spacing": list(geometry.array_spacing)}
    write_probabilities(tmp_path, "c", probs, properties)
    assert np.allclose(read_probabilities(tmp_path, "c", array.shape, geometry), probs)
    moved = Geometry(geometry.spacing, (1.0, 2.0, 13.0), geometry.direction)
    with pytest.raises(ValueError, match=r"case c: geometry of .*c\.pkl .* differs from the image.* \(origin"):
        read_probabilities(tmp_path, "c", array.shape, moved)
    with pytest.raises(ValueError, match=r"case c: probabilities \(4, 3, 8, 9\) .* do not fit the image of shape"):
        read_probabilities(tmp_path, "c", (3, 9, 8), geometry)
    with pytest.raises(FileNotFoundError, match=r"case d: missing .*d\.npz"):
        read_probabilities(tmp_path, "d", array.shape, geometry)


def test_label_map_keeps_the_geometry(tmp_path):
    array, geometry = _write_image(tmp_path / "img.nii.gz", origin=(-4.0, 0.5, 7.0))
    labels = (array % 4).astype(np.uint8)
    write_label_map(tmp_path / "out.nii.gz", labels, geometry)
    back, back_geometry = read_image(tmp_path / "out.nii.gz")
    assert np.array_equal(back, labels) and back_geometry == geometry
    assert sorted(p.name for p in tmp_path.iterdir()) == ["img.nii.gz", "out.nii.gz"]


def test_volumes_read_through_the_checked_reader_and_its_one_tolerance(tmp_path):
    """A truncated image is an error naming it (not zeros), also from the header-only reader; geometries within
    image_io's tolerances match, beyond them they do not, with the same description as image_io's comparison."""
    from nnunetv2_glrp.image_io import ImageFileError, geometry_mismatch

    array, geometry = _write_image(tmp_path / "img.nii.gz")
    data = (tmp_path / "img.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(data[: len(data) // 2])
    for reader in (read_image, read_geometry):
        with pytest.raises(ImageFileError, match=r"cut\.nii\.gz: .*the file is incomplete"):
            reader(tmp_path / "cut.nii.gz")
    with pytest.raises(FileNotFoundError, match=r"none\.nii\.gz: image file not found"):
        read_geometry(tmp_path / "none.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(array[0]), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(ValueError, match=r"flat\.nii\.gz: a 2D image, post-processing needs 3D"):
        read_geometry(tmp_path / "flat.nii.gz")
    near = Geometry(geometry.spacing, tuple(o + 5e-4 for o in geometry.origin), geometry.direction)
    far = Geometry(geometry.spacing, (1.0, 2.0, 3.01), geometry.direction)
    stretched = Geometry(tuple(s * 1.001 for s in geometry.spacing), geometry.origin, geometry.direction)
    assert geometry.mismatch(near) is None
    assert far.mismatch(geometry).startswith("origin") and stretched.mismatch(geometry).startswith("spacing")
    moved = sitk.ReadImage(str(tmp_path / "img.nii.gz"))
    moved.SetOrigin(far.origin)
    assert geometry_mismatch(moved, sitk.ReadImage(str(tmp_path / "img.nii.gz"))) == far.mismatch(geometry)
