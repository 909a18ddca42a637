"""ACDC-layout -> nnU-Net raw conversion: contents, orientation, geometry, errors, atomicity."""

from __future__ import annotations

import json
import os
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.cli import main
from nnunetv2_glrp.conversion import convert_acdc
from nnunetv2_glrp.conversion.orientation import detect_slice_order, flip_slices, lv_myo_area_per_slice
from nnunetv2_glrp.conversion.phantom import make_phantom
from conversion_checks import read_array as _arr, split_record


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture(scope="module")
def small_phantom(tmp_path_factory):
    """4 patients (patient001 stored apex-first), 3 cine frames: 3 in training/, 1 in testing/."""
    root = tmp_path_factory.mktemp("small_phantom")
    meta = make_phantom(root, n_patients=4, seed=1, n_frames=3)
    assert [p.apex_first for p in meta] == [True, False, False, False]
    return root, meta


@pytest.fixture
def acdc_copy(small_phantom, tmp_path):
    root = tmp_path / "acdc"
    shutil.copytree(small_phantom[0], root)
    return root


# ---------------------------------------------------------------- the session dataset (10 patients)

def test_cases_and_split(phantom_raw_dataset, phantom_acdc):
    _, meta = phantom_acdc
    record = split_record(phantom_raw_dataset)
    train, val, test = record["train"], record["val"], record["test"]
    assert (len(train), len(val), len(test)) == (7, 1, 2)
    assert set(train) | set(val) | set(test) == {p.patient_id for p in meta}
    assert not (set(train) & set(val) or set(train) & set(test) or set(val) & set(test))
    assert record["format_version"] == 1 and record["seed"] == 0 and record["split"] == "7:1:2"
    tr = {f"{p}_{ph}" for p in train + val for ph in ("ED", "ES")}
    ts = {f"{p}_{ph}" for p in test for ph in ("ED", "ES")}
    assert _names(phantom_raw_dataset / "imagesTr") == {f"{c}_0000.nii.gz" for c in tr}
    assert _names(phantom_raw_dataset / "labelsTr") == {f"{c}.nii.gz" for c in tr}
    assert _names(phantom_raw_dataset / "imagesTs") == {f"{c}_0000.nii.gz" for c in ts}
    assert _names(phantom_raw_dataset / "labelsTs") == {f"{c}.nii.gz" for c in ts}
    ds = json.loads((phantom_raw_dataset / "dataset.json").read_text())
    assert ds["numTraining"] == len(tr) and ds["file_ending"] == ".nii.gz"
    assert ds["channel_names"] == {"0": "cineMRI"}
    assert ds["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert not list(phantom_raw_dataset.parent.glob(".Dataset901*"))


def test_unlabeled_frames_only_from_train_val(phantom_raw_dataset, phantom_acdc):
    _, meta = phantom_acdc
    record = split_record(phantom_raw_dataset)
    pool = set(record["train"] + record["val"])
    files = _names(phantom_raw_dataset / "unlabeledTr")
    assert len(files) == sum(p.n_frames for p in meta if p.patient_id in pool)
    assert {f.split("_")[0] for f in files} == pool
    unlabeled = {c: v for c, v in record["cases"].items() if v["kind"] == "unlabeled"}
    assert {f"{c}_0000.nii.gz" for c in unlabeled} == files
    assert all(v["set"] in ("train", "val") for v in unlabeled.values())
    # the cine ED frame is the ED image, on the same grid
    pid = sorted(pool)[0]
    a = sitk.ReadImage(str(phantom_raw_dataset / "unlabeledTr" / f"{pid}_t01_0000.nii.gz"))
    b = sitk.ReadImage(str(phantom_raw_dataset / "imagesTr" / f"{pid}_ED_0000.nii.gz"))
    assert np.array_equal(sitk.GetArrayFromImage(a), sitk.GetArrayFromImage(b))
    assert a.GetOrigin() == b.GetOrigin() and a.GetDirection() == b.GetDirection()


def test_labels_and_geometry(phantom_raw_dataset):
    for images, labels in (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs")):
        for lab_path in sorted((phantom_raw_dataset / labels).iterdir()):
            lab = sitk.ReadImage(str(lab_path))
            img = sitk.ReadImage(str(phantom_raw_dataset / images / lab_path.name.replace(".nii.gz", "_0000.nii.gz")))
            assert set(np.unique(sitk.GetArrayFromImage(lab))) <= {0, 1, 2, 3}
            assert lab.GetSize() == img.GetSize()
            assert np.allclose(lab.GetSpacing(), img.GetSpacing())
            assert np.allclose(lab.GetOrigin(), img.GetOrigin())
            assert np.allclose(lab.GetDirection(), img.GetDirection())


def test_base_first_after_conversion(phantom_raw_dataset, phantom_acdc):
    root, meta = phantom_acdc
    record = split_record(phantom_raw_dataset)
    for p in meta:
        assert record["slice_order"][p.patient_id]["flipped"] == p.apex_first
        assert record["slice_order"][p.patient_id]["stored"] == ("apex-first" if p.apex_first else "base-first")
        assert record["n_slices"][p.patient_id] == p.n_slices
        folder = "labelsTs" if p.patient_id in record["test"] else "labelsTr"
        lab = _arr(phantom_raw_dataset / folder / f"{p.patient_id}_ED.nii.gz")
        areas = lv_myo_area_per_slice([lab])
        assert np.corrcoef(np.arange(len(areas)), areas)[0, 1] < -0.9, p.patient_id  # shrinks base -> apex
        assert not (lab[-1] == 1).any()  # the apex slice (last) has no RV


def test_flip_keeps_physical_positions(phantom_raw_dataset, phantom_acdc):
    root, meta = phantom_acdc
    record = split_record(phantom_raw_dataset)
    p = next(q for q in meta if q.apex_first)
    src = sitk.ReadImage(str(root / p.folder / f"{p.patient_id}_frame{p.ed_frame:02d}.nii.gz"))
    folder = "imagesTs" if p.patient_id in record["test"] else "imagesTr"
    out = sitk.ReadImage(str(phantom_raw_dataset / folder / f"{p.patient_id}_ED_0000.nii.gz"))
    m = src.GetSize()[2]
    for idx in [(0, 0, 0), (5, 7, 1), (20, 3, m - 1)]:
        moved = (idx[0], idx[1], m - 1 - idx[2])
        assert np.allclose(out.TransformIndexToPhysicalPoint(moved), src.TransformIndexToPhysicalPoint(idx), atol=1e-4)
        assert out.GetPixel(moved) == src.GetPixel(idx)


def test_flip_slices_with_oblique_direction():
    rng = np.random.default_rng(0)
    image = sitk.GetImageFromArray(rng.integers(0, 100, size=(5, 6, 7)).astype(np.int16))
    image.SetSpacing((0.8, 0.9, 7.5))
    image.SetOrigin((10.0, -20.0, 30.0))
    q, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    image.SetDirection(tuple(q.ravel()))
    flipped = flip_slices(image)
    for idx in [(0, 0, 0), (6, 5, 4), (3, 2, 1)]:
        moved = (idx[0], idx[1], 4 - idx[2])
        assert np.allclose(flipped.TransformIndexToPhysicalPoint(moved), image.TransformIndexToPhysicalPoint(idx))
        assert flipped.GetPixel(moved) == image.GetPixel(idx)
    assert np.array_equal(sitk.GetArrayFromImage(flip_slices(flipped)), sitk.GetArrayFromImage(image))


# ---------------------------------------------------------------- small phantom: options and errors

def test_official_split_and_overwrite(small_phantom, tmp_path):
    root, meta = small_phantom
    raw = tmp_path / "raw"
    out = convert_acdc(root, 950, split="official", seed=2, raw_root=raw)
    record = split_record(out)
    assert record["test"] == [p.patient_id for p in meta if p.subset == "testing"]
    assert len(record["val"]) == 1 and len(record["train"]) == 2  # round(3/8) -> at least one
    with pytest.raises(FileExistsError, match="already exists"):
        convert_acdc(root, 950, raw_root=raw)
    out2 = convert_acdc(root, 950, split="2:1:1", seed=0, raw_root=raw, overwrite=True)
    assert out2 == out and split_record(out)["split"] == "2:1:1"
    assert sorted(p.name for p in raw.iterdir()) == ["Dataset950_ACDC"]
    with pytest.raises(ValueError, match="already used by Dataset950_ACDC"):
        convert_acdc(root, 950, dataset_name="Other", raw_root=raw)


def test_missing_4d_warns_and_continues(acdc_copy, tmp_path, caplog):
    (acdc_copy / "training/patient002/patient002_4d.nii.gz").unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = convert_acdc(acdc_copy, 951, split="2:1:1", raw_root=tmp_path / "raw")
    assert not [w for w in caught if "no 4D cine" in str(w.message)]  # printed once: as a log line only
    record = split_record(out)
    assert caplog.text.count("patient002: no 4D cine") == (0 if "patient002" in record["test"] else 1)
    assert record["missing_cine"] == (["patient002"] if "patient002" not in record["test"] else [])
    frames = [c for c, v in record["cases"].items() if v["kind"] == "unlabeled" and v["patient"] == "patient002"]
    if "patient002" not in record["test"]:
        assert sorted(frames) == ["patient002_t01", f"patient002_t{record['cases']['patient002_ES']['frame']:02d}"]


def test_n4_option(small_phantom, tmp_path):
    """N4 output is float32, same anatomy, and flattens the blood pool (uniform before the bias field)."""
    root, meta = small_phantom
    out = convert_acdc(root, 952, split="2:1:1", raw_root=tmp_path / "raw", n4=True)
    record = split_record(out)
    assert record["n4"]["shrink_factor"] == 4
    cv_before, cv_after = [], []
    for p in meta:
        images, labels = ("imagesTs", "labelsTs") if p.patient_id in record["test"] else ("imagesTr", "labelsTr")
        img = sitk.ReadImage(str(out / images / f"{p.patient_id}_ED_0000.nii.gz"))
        assert img.GetPixelID() == sitk.sitkFloat32
        corrected = sitk.GetArrayFromImage(img)
        original = _arr(root / p.folder / f"{p.patient_id}_frame01.nii.gz").astype(np.float64)
        if record["slice_order"][p.patient_id]["flipped"]:
            original = original[::-1]
        assert np.corrcoef(corrected.ravel(), original.ravel())[0, 1] > 0.8  # still the same anatomy
        blood = np.isin(_arr(out / labels / f"{p.patient_id}_ED.nii.gz"), (1, 3))
        cv_before.append(original[blood].std() / original[blood].mean())
        cv_after.append(corrected[blood].std() / corrected[blood].mean())
    assert np.mean(cv_after) < 0.97 * np.mean(cv_before)
    assert sitk.ReadImage(str(next((out / "unlabeledTr").iterdir()))).GetPixelID() == sitk.sitkFloat32


def _write_like(path: Path, array: np.ndarray, like: sitk.Image, **geometry) -> None:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(like) if array.shape == sitk.GetArrayFromImage(like).shape else None
    for key, value in geometry.items():
        getattr(image, f"Set{key}")(value)
    sitk.WriteImage(image, str(path))


def _corrupt(root: Path, kind: str) -> None:
    folder = root / "training/patient002"
    img_path, gt_path = folder / "patient002_frame01.nii.gz", folder / "patient002_frame01_gt.nii.gz"
    img, gt = sitk.ReadImage(str(img_path)), sitk.ReadImage(str(gt_path))
    lab = sitk.GetArrayFromImage(gt)
    if kind == "no-info":
        (folder / "Info.cfg").unlink()
    elif kind == "garbled-info":
        (folder / "Info.cfg").write_text("ED: 1\nthis is not a key value line\n")
    elif kind == "non-int-info":
        (folder / "Info.cfg").write_text((folder / "Info.cfg").read_text().replace("ED: 1", "ED: one"))
    elif kind == "ed-beyond-frames":
        (folder / "Info.cfg").write_text((folder / "Info.cfg").read_text().replace("ED: 1", "ED: 9"))
    elif kind == "no-es-file":
        next(folder.glob("patient002_frame0[2-9].nii.gz")).unlink()
    elif kind == "shape":
        _write_like(gt_path, lab[:, :-2], gt, Spacing=gt.GetSpacing(), Origin=gt.GetOrigin())
    elif kind == "spacing":
        _write_like(gt_path, lab, gt, Spacing=tuple(s * 1.1 for s in gt.GetSpacing()))
    elif kind == "origin":
        _write_like(gt_path, lab, gt, Origin=tuple(o + 2.0 for o in gt.GetOrigin()))
    elif kind == "direction":
        _write_like(gt_path, lab, gt, Direction=(0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0))
    elif kind == "label-values":
        bad = lab.copy()
        bad[0, 0, :3] = 7
        _write_like(gt_path, bad, gt)
    elif kind == "non-3d":
        sitk.WriteImage(sitk.GetImageFromArray(sitk.GetArrayFromImage(img)[0]), str(img_path))
    elif kind == "constant":
        _write_like(img_path, np.zeros_like(sitk.GetArrayFromImage(img)), img)
    elif kind == "garbled-nifti":
        img_path.write_bytes(b"not a nifti file at all" * 10)
    elif kind in ("truncated-image", "truncated-label", "truncated-4d"):
        path = {"truncated-image": img_path, "truncated-label": gt_path,
                "truncated-4d": folder / "patient002_4d.nii.gz"}[kind]
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])  # what an interrupted copy or download leaves
    elif kind == "nan-image":
        bad = sitk.GetArrayFromImage(img).astype(np.float32)
        bad[1, 3, 3] = np.nan
        _write_like(img_path, bad, img)
    elif kind == "inf-4d":
        cine_path = folder / "patient002_4d.nii.gz"
        cine = sitk.ReadImage(str(cine_path))
        bad = sitk.GetArrayFromImage(cine).astype(np.float32)
        bad[2, 0, 0, 0] = np.inf
        image = sitk.GetImageFromArray(bad, isVector=False)
        image.CopyInformation(cine)
        sitk.WriteImage(image, str(cine_path))
    elif kind == "duplicate-info":
        (folder / "Info.cfg").write_text((folder / "Info.cfg").read_text() + "ED: 2\n")
    elif kind == "ed-equals-es":
        text = (folder / "Info.cfg").read_text()
        es = next(line for line in text.splitlines() if line.startswith("ES:"))
        (folder / "Info.cfg").write_text(text.replace(es, "ES: 1"))
    elif kind == "4d-size":
        cine = folder / "patient002_4d.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((3, 2, 5, 5), np.int16), isVector=False), str(cine))
    elif kind == "3d-cine":
        cine = folder / "patient002_4d.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(np.ones((2, 5, 5), np.int16)), str(cine))


ERRORS = [
    ("no-info", FileNotFoundError, "patient002: Info.cfg missing"),
    ("garbled-info", ValueError, "patient002: Info.cfg line 2 is not 'Key: value'"),
    ("non-int-info", ValueError, "patient002: Info.cfg 'ED' is not an integer"),
    ("ed-beyond-frames", ValueError, "patient002: Info.cfg ED = 9 outside 1..NbFrame=3"),
    ("no-es-file", FileNotFoundError, "patient002: ES image file missing"),
    ("shape", ValueError, r"patient002: image patient002_frame01.nii.gz and label .* differ in size"),
    ("spacing", ValueError, "patient002: .* differ in spacing"),
    ("origin", ValueError, "patient002: .* differ in origin"),
    ("direction", ValueError, "patient002: .* differ in direction"),
    ("label-values", ValueError, r"patient002: patient002_frame01_gt.nii.gz has label values outside \{0, 1, 2, 3\}: 7"),
    ("non-3d", ValueError, "patient002: patient002_frame01.nii.gz is 2D"),
    ("constant", ValueError, "patient002: patient002_frame01.nii.gz is constant"),
    ("garbled-nifti", ValueError, "patient002: cannot read ED image"),
    ("4d-size", ValueError, r"patient002: cine patient002_4d.nii.gz frames have size \(5, 5, 2\), the ED image has"),
    ("3d-cine", ValueError, r"patient002: cine patient002_4d.nii.gz is 3D \(size \(5, 5, 2\)\), expected 4D"),
    ("truncated-image", ValueError, r"patient002: cannot read ED image .*patient002_frame01.nii.gz: .*incomplete"),
    ("truncated-label", ValueError, r"patient002: cannot read ED label .*patient002_frame01_gt.nii.gz: .*incomplete"),
    ("truncated-4d", ValueError, r"patient002: cannot read 4D cine .*patient002_4d.nii.gz: .*incomplete"),
    ("nan-image", ValueError, "patient002: cannot read ED image .*patient002_frame01.nii.gz: has 1 NaN or infinite"),
    ("inf-4d", ValueError, "patient002: cannot read 4D cine .*patient002_4d.nii.gz: has 1 NaN or infinite voxels"),
    ("duplicate-info", ValueError, r"patient002: Info.cfg has 'ED' twice \(lines 1 and 7\)"),
    ("ed-equals-es", ValueError, r"patient002: Info.cfg ED and ES are the same frame \(1\)"),
]


@pytest.mark.parametrize("kind,error,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_is_a_clear_error_and_leaves_nothing(acdc_copy, tmp_path, kind, error, message):
    _corrupt(acdc_copy, kind)
    raw = tmp_path / "raw"
    # 3:1:0 keeps patient002 in train or val so that its 4D file is read too
    with pytest.raises(error, match=message):
        convert_acdc(acdc_copy, 953, split="3:1:0", raw_root=raw)
    assert not raw.exists() or not list(raw.iterdir())


def test_info_cfg_with_a_byte_order_mark_is_read(acdc_copy, tmp_path):
    info = acdc_copy / "training/patient002/Info.cfg"
    info.write_bytes(b"\xef\xbb\xbf" + info.read_bytes())
    out = convert_acdc(acdc_copy, 957, split="3:1:0", raw_root=tmp_path / "raw")
    record = split_record(out)
    assert record["cases"]["patient002_ED"]["frame"] == 1


def test_misnamed_patient_folders_are_listed_in_a_warning(acdc_copy, tmp_path, caplog):
    (acdc_copy / "training/patient003").rename(acdc_copy / "training/Patient003")
    (acdc_copy / "testing/notes").mkdir()
    out = convert_acdc(acdc_copy, 958, split="2:1:0", raw_root=tmp_path / "raw")
    assert re.search(r"skipped 2 folder\(s\) .*: training/Patient003, testing/notes", caplog.text)
    record = split_record(out)
    assert "patient003" not in record["train"] + record["val"] + record["test"]


def test_a_patient_folder_without_three_digits_is_skipped_with_a_warning(acdc_copy, tmp_path, caplog):
    folder = acdc_copy / "training/patient3"
    (acdc_copy / "training/patient003").rename(folder)
    for f in folder.iterdir():
        f.rename(folder / f.name.replace("patient003", "patient3"))
    out = convert_acdc(acdc_copy, 964, split="2:1:0", raw_root=tmp_path / "raw")
    assert re.search(r"skipped 1 folder\(s\) not named patientNNN .*: training/patient3$", caplog.text, re.M)
    record = split_record(out)
    assert sorted(record["train"] + record["val"] + record["test"]) == ["patient001", "patient002", "patient004"]


@pytest.mark.parametrize("split, counts", [("1:0:0", "4 train / 0 val / 0 test"),
                                           ("1:100:100", "0 train / 2 val / 2 test"),
                                           ("1:0:1", "2 train / 0 val / 2 test")])
def test_split_leaving_an_empty_set_is_refused_with_the_counts(small_phantom, tmp_path, split, counts):
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match=f"split '{split}' over 4 patients gives {counts} patients"):
        convert_acdc(small_phantom[0], 959, split=split, raw_root=raw)
    assert not raw.exists() or not list(raw.iterdir())


def test_cli_convert_and_error(small_phantom, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert main(["convert-acdc", str(small_phantom[0]), "-d", "954", "--split", "2:1:1", "--name", "Cli"]) == 0
    assert "flipped to base-first: patient001" in capsys.readouterr().out
    assert (tmp_path / "raw/Dataset954_Cli/dataset.json").is_file()
    assert main(["convert-acdc", str(tmp_path / "nowhere"), "-d", "955"]) == 2
    assert "ACDC root folder not found" in capsys.readouterr().err
    assert main(["make-phantom", str(tmp_path / "ph"), "--patients", "1", "--frames", "3"]) == 0
    assert (tmp_path / "ph/training/patient001/Info.cfg").is_file()


def test_nnunet_integrity_check_accepts_the_dataset_and_rejects_a_corrupted_copy(phantom_raw_dataset, phantom_acdc,
                                                                                 tmp_path, monkeypatch, capfd):
    """What nnU-Net's integrity check (``prepare`` runs it, after our completeness check) verifies, read with
    nnU-Net's own reader: the 16 training cases of the 8 train/val patients, one channel, labels {0, 1, 2, 3}
    and the image's exact grid in every label file (nnU-Net itself only warns on origin and direction).
    A corrupted copy is refused: a stray label value (nnU-Net prints the file) and a truncated label (our
    check names the file; SimpleITK alone would read it with zeros)."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    from nnunetv2_glrp.preparation.planning import _verify_integrity

    _, meta = phantom_acdc
    record = split_record(phantom_raw_dataset)
    dataset_json = json.loads((phantom_raw_dataset / "dataset.json").read_text())
    cases = get_filenames_of_train_images_and_targets(str(phantom_raw_dataset), dataset_json)
    patients = record["train"] + record["val"]
    assert len(patients) == 8 and len(meta) == 10
    assert sorted(cases) == sorted(f"{p}_{phase}" for p in patients for phase in ("ED", "ES"))
    assert dataset_json["numTraining"] == len(cases) == 16
    reader = SimpleITKIO()
    for case, files in cases.items():
        images, image_properties = reader.read_images(files["images"])
        seg, seg_properties = reader.read_seg(files["label"])
        assert images.shape[0] == 1 and seg.shape == images.shape, case
        assert set(np.unique(seg).tolist()) == {0, 1, 2, 3}, case  # every class drawn, nothing else
        assert seg_properties["spacing"] == image_properties["spacing"], case
        assert seg_properties["sitk_stuff"] == image_properties["sitk_stuff"], case  # origin, direction too
    monkeypatch.setenv("nnUNet_raw", str(phantom_raw_dataset.parent))
    _verify_integrity(phantom_raw_dataset.name, 1)  # the dataset as converted passes

    copy = tmp_path / "raw" / phantom_raw_dataset.name
    shutil.copytree(phantom_raw_dataset, copy)
    monkeypatch.setenv("nnUNet_raw", str(copy.parent))
    label_path = copy / "labelsTr" / f"{patients[0]}_ED.nii.gz"
    label = sitk.ReadImage(str(label_path))
    stray = sitk.GetArrayFromImage(label)
    stray[0, 0, 0] = 7
    _write_like(label_path, stray, label)
    capfd.readouterr()
    with pytest.raises(ValueError, match=rf"{copy.name}: nnU-Net's dataset integrity check failed: Some "
                                         "segmentation images contained unexpected labels"):
        _verify_integrity(copy.name, 1)
    assert f"Unexpected labels found in file {label_path}" in capfd.readouterr().out  # nnU-Net's worker printed it
    _write_like(label_path, sitk.GetArrayFromImage(label), label)
    data = label_path.read_bytes()
    label_path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=rf"1 image file\(s\) incomplete or not finite: {re.escape(str(label_path))}: "
                                         r".*incomplete"):
        _verify_integrity(copy.name, 1)


def test_nnunets_integrity_workers_print_unbuffered_and_the_environment_is_restored(phantom_raw_dataset, monkeypatch):
    """nnU-Net's spawned integrity workers print the offending files, and the pool terminates them when the check
    ends: with stdout a file or a pipe (a background run's log; pytest's capture) a block-buffered message died
    with the worker (the check above failed that way in a CI run under load). They run with PYTHONUNBUFFERED=1;
    the caller's value comes back after."""
    from nnunetv2.experiment_planning import verify_dataset_integrity as nnunet_check

    from nnunetv2_glrp.preparation.planning import _verify_integrity

    seen = []
    monkeypatch.setattr(nnunet_check, "verify_dataset_integrity",
                        lambda folder, n: seen.append((folder, os.environ.get("PYTHONUNBUFFERED"))))
    monkeypatch.setenv("nnUNet_raw", str(phantom_raw_dataset.parent))
    for before in (None, "0"):
        if before is None:
            monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)
        else:
            monkeypatch.setenv("PYTHONUNBUFFERED", before)
        _verify_integrity(phantom_raw_dataset.name, 1)
        assert seen[-1] == (os.fspath(phantom_raw_dataset), "1")
        assert os.environ.get("PYTHONUNBUFFERED") == before


def test_stale_temporary_folder_of_a_killed_run_is_removed(small_phantom, tmp_path):
    raw = tmp_path / "raw"
    stale = raw / ".Dataset956_ACDC.tmp-killed"
    (stale / "imagesTr").mkdir(parents=True)
    out = convert_acdc(small_phantom[0], 956, split="2:1:1", raw_root=raw)
    assert sorted(p.name for p in raw.iterdir()) == [out.name]


@pytest.mark.parametrize("profile, stored", [
    ([0, 0, 0, 100, 60, 30], "base-first"),  # two-three empty slices above the base of a short stack
    ([30, 60, 100, 0, 0, 0], "apex-first"),
    ([0, 120, 90, 60, 20, 0, 0, 0, 0], "base-first"),  # empty at both ends
    ([0, 0, 0, 0, 20, 60, 90, 120, 0], "apex-first"),
])
def test_slice_order_is_decided_within_the_labelled_extent(profile, stored):
    order = detect_slice_order([_profile_labels(profile)])
    assert order.stored == stored and order.flipped == (stored == "apex-first"), order.evidence


def _profile_labels(lv_myo: list[int], rv: list[int] | None = None, side: int = 60) -> np.ndarray:
    """A label stack [Z, side, side] with ``lv_myo[z]`` voxels of MYO (2) and ``rv[z]`` of RV (1) on slice z."""
    labels = np.zeros((len(lv_myo), side, side), dtype=np.uint8)
    for z, area in enumerate(lv_myo):
        labels[z].flat[:area] = 2
        if rv is not None:
            labels[z].flat[area:area + rv[z]] = 1
    return labels


# LV+MYO voxels per slice (ED+ES) of two real ACDC stacks, stored base-first (index 0 = base)
REAL_FLAT = [2884, 2946, 2858, 2880, 3039, 3032, 2897, 2945, 0]  # halves 11568 vs 11913: the old rule flipped it
REAL_BASE_FIRST = [0, 0, 1553, 2886, 2899, 2743, 2508, 2331, 1722, 1658, 1015]


def test_a_flat_real_profile_is_undecided_and_kept_as_stored():
    order = detect_slice_order([_profile_labels(REAL_FLAT)])
    assert (order.stored, order.flipped) == ("undecided", False)
    assert "undecided, kept as stored" in order.evidence and "5830" in order.evidence and "5842" in order.evidence


def test_a_real_base_first_profile_with_a_partial_basal_slice_is_not_flipped():
    order = detect_slice_order([_profile_labels(REAL_BASE_FIRST)])
    assert (order.stored, order.flipped) == ("base-first", False), order.evidence
    reverse = detect_slice_order([_profile_labels(REAL_BASE_FIRST[::-1])])
    assert (reverse.stored, reverse.flipped) == ("apex-first", True), reverse.evidence


def test_a_clearly_apex_first_stack_is_flipped_and_a_small_difference_is_not():
    assert detect_slice_order([_profile_labels([800, 1500, 2200, 2600, 2900, 3000])]).flipped
    # ratio 1.2 between the end thirds: below DECISIVE_RATIO (1.3), undecided
    order = detect_slice_order([_profile_labels([2500, 2500, 2600, 2800, 3000, 3000])])
    assert (order.stored, order.flipped) == ("undecided", False), order.evidence


def test_the_rv_decides_a_flat_lv_and_conflicting_cues_keep_the_stored_order():
    flat = [3000] * 6
    rv_apex_first = [0, 100, 400, 800, 1000, 1200]  # RV largest at the last slice: that is the base
    order = detect_slice_order([_profile_labels(flat, rv_apex_first)])
    assert (order.stored, order.flipped) == ("apex-first", True), order.evidence
    order = detect_slice_order([_profile_labels(flat, rv_apex_first[::-1])])
    assert (order.stored, order.flipped) == ("base-first", False), order.evidence
    lv_base_first = [3000, 2900, 2500, 2000, 1500, 1000]
    order = detect_slice_order([_profile_labels(lv_base_first, rv_apex_first)])
    assert (order.stored, order.flipped) == ("undecided", False) and "cues conflict" in order.evidence
    # without RV labels in the rule (Sunnybrook: label 1 is LV) the RV voxels are not read
    order = detect_slice_order([_profile_labels(flat, rv_apex_first)], rv_labels=())
    assert (order.stored, order.flipped) == ("undecided", False), order.evidence


# ---------------------------------------------------------------- a published split from a file

def test_split_file_json_and_csv_are_taken_as_given_and_recorded(small_phantom, tmp_path):
    root, meta = small_phantom
    given = {"train": ["patient003", "patient004"], "val": ["patient001"], "test": ["patient002"]}
    split_json = tmp_path / "split.json"
    split_json.write_text(json.dumps(given), encoding="utf-8")
    out = convert_acdc(root, 960, raw_root=tmp_path / "raw", split_file=split_json, seed=7)
    record = split_record(out)
    assert {s: record[s] for s in ("train", "val", "test")} == given
    assert record["split"] == "file" and record["seed"] is None
    assert record["split_file"]["path"] == str(split_json.resolve()) and len(record["split_file"]["sha256"]) == 64
    assert _names(out / "imagesTs") == {"patient002_ED_0000.nii.gz", "patient002_ES_0000.nii.gz"}
    split_csv = tmp_path / "split.csv"
    split_csv.write_text("patient,set\npatient001,train\npatient002,val\npatient003,test\npatient004,train\n",
                         encoding="utf-8")
    out = convert_acdc(root, 961, raw_root=tmp_path / "raw", split_file=split_csv)
    record = split_record(out)
    assert (record["train"], record["val"], record["test"]) == (["patient001", "patient004"], ["patient002"],
                                                                ["patient003"])


@pytest.mark.parametrize("given, message", [
    ({"train": ["patient001", "patient002"], "val": ["patient003"], "test": []},
     "not assigned to any set: patient004"),
    ({"train": ["patient001", "patient002", "patient009"], "val": ["patient003"], "test": ["patient004"]},
     "not found in the source folder: patient009"),
    ({"train": ["patient001", "patient002"], "val": ["patient003", "patient002"], "test": ["patient004"]},
     r"more than once: patient002 \(train\+val\)"),
    ({"train": ["patient001", "patient002", "patient003", "patient004"], "val": [], "test": []},
     "no val patients"),
])
def test_split_file_errors_name_the_offending_ids(small_phantom, tmp_path, given, message):
    split_json = tmp_path / "split.json"
    split_json.write_text(json.dumps(given), encoding="utf-8")
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match=message):
        convert_acdc(small_phantom[0], 962, raw_root=raw, split_file=split_json)
    assert not raw.exists() or not list(raw.iterdir())


def test_split_file_from_the_cli_and_a_bad_csv_header(small_phantom, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    bad = tmp_path / "split.csv"
    bad.write_text("id,subset\npatient001,train\n", encoding="utf-8")
    assert main(["convert-acdc", str(small_phantom[0]), "-d", "963", "--split_file", str(bad)]) == 2
    assert "header must be 'patient,set'" in capsys.readouterr().err
    good = tmp_path / "split.json"
    good.write_text(json.dumps({"train": ["patient001", "patient002"], "val": ["patient003"],
                                "test": ["patient004"]}), encoding="utf-8")
    assert main(["convert-acdc", str(small_phantom[0]), "-d", "963", "--split_file", str(good)]) == 0
    assert "2 train / 1 val / 1 test" in capsys.readouterr().out


# ---------------------------------------------------------------- one-line messages

def test_ctrl_c_during_convert_acdc_leaves_nothing_and_exits_130(small_phantom, tmp_path, capsys, monkeypatch):
    import nnunetv2_glrp.conversion.acdc_converter as converter

    original, calls = converter._convert_patient, []

    def interrupted(*args):
        calls.append(args[1].patient_id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return original(*args)

    monkeypatch.setattr(converter, "_convert_patient", interrupted)
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert main(["convert-acdc", str(small_phantom[0]), "-d", "965", "--split", "2:1:1"]) == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == "nnUNetv2_glrp convert-acdc: interrupted; nothing written"
    assert "Traceback" not in err and calls == ["patient001", "patient002"]
    assert list((tmp_path / "raw").iterdir()) == []  # the temporary folder is gone too


def test_an_nnunet_raw_that_cannot_be_created_is_one_line(small_phantom, tmp_path, capsys, monkeypatch):
    (tmp_path / "a_file").write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "a_file" / "raw"))
    assert main(["convert-acdc", str(small_phantom[0]), "-d", "966"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert f"cannot create the nnUNet_raw folder {tmp_path / 'a_file' / 'raw'}" in err
    with pytest.raises(OSError, match="cannot create the nnUNet_raw folder"):
        convert_acdc(small_phantom[0], 966, raw_root=tmp_path / "a_file" / "raw")


def test_an_existing_dataset_asks_for_the_cli_option(small_phantom, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    assert main(["convert-acdc", str(small_phantom[0]), "-d", "967", "--split", "2:1:1"]) == 0
    capsys.readouterr()
    assert main(["convert-acdc", str(small_phantom[0]), "-d", "967", "--split", "2:1:1"]) == 2
    err = capsys.readouterr().err
    assert "Dataset967_ACDC already exists; pass --overwrite to replace it" in err and "overwrite=True" not in err


def test_a_text_file_named_nii_gz_is_not_called_truncated(acdc_copy, tmp_path):
    image = acdc_copy / "training/patient002/patient002_frame01.nii.gz"
    image.write_text("this is not an image\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"patient002_frame01\.nii\.gz: not a gzip-compressed NIfTI") as error:
        convert_acdc(acdc_copy, 968, split="2:1:1", raw_root=tmp_path / "raw")
    assert "truncated" not in str(error.value)
