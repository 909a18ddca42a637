"""convert-mnms on the M&Ms phantom (official 4D layout and the 3D ED/ES variant): labels in ACDC's numbering,
vendor/centre per case, the vendor hold-out, per-vendor slice order, and bad inputs that leave nothing."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.cli import main
from nnunetv2_glrp.conversion import convert_mnms
from nnunetv2_glrp.conversion.phantom_layouts import make_mnms_phantom
from conversion_checks import assert_nothing_left, assert_one_line_error_and_nothing_left
from conversion_checks import read_array as _array, split_record as _record

N_PATIENTS, N_FRAMES = 8, 3


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnms_phantom") / "mnms"
    metas = make_mnms_phantom(root, n_patients=N_PATIENTS, seed=0, n_frames=N_FRAMES)
    vendors = json.loads((root / "phantom.json").read_text(encoding="utf-8"))["vendors"]
    return root, {m.patient_id: m for m in metas}, vendors


@pytest.fixture(scope="module")
def held_out(phantom, tmp_path_factory):
    return convert_mnms(phantom[0], 980, split="vendor:D", seed=0, raw_root=tmp_path_factory.mktemp("raw"))


@pytest.fixture
def copy(phantom, tmp_path):
    root = tmp_path / "mnms"
    shutil.copytree(phantom[0], root)
    return root


def _subject_folder(root: Path, sid: str) -> Path:
    return next(root.rglob(f"{sid}_sa.nii.gz")).parent


def test_vendor_hold_out_counts_and_vendor_per_case(held_out, phantom):
    _, metas, vendors = phantom
    record, info = _record(held_out), json.loads((held_out / "dataset.json").read_text(encoding="utf-8"))
    assert record["test"] == sorted(s for s, v in vendors.items() if v == "D") and len(record["test"]) == 2
    assert sorted(record["train"] + record["val"]) == sorted(s for s, v in vendors.items() if v != "D")
    assert len(record["val"]) == 1  # 6 / 8 rounded
    assert info["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert info["numTraining"] == 12 and info["numTest"] == 4 and info["numUnlabeled"] == 6 * N_FRAMES
    for case in record["cases"].values():
        assert case["vendor"] == vendors[case["patient"]]
        assert case["centre"] == str("ABCD".index(case["vendor"]) + 1)
    assert record["mnms"]["M001"]["ed_frame"] == metas["M001"].ed_frame  # CSV 0-based -> 1-based


def test_labels_in_acdc_numbering_and_per_vendor_slice_order(held_out, phantom):
    """Vendors A-C are stored apex-first and flipped, D base-first and kept; each converted label is the M&Ms
    label at the CSV's frame remapped 1 LV -> 3, 3 RV -> 1 (MYO 2 kept), reversed along z where flipped."""
    root, metas, vendors = phantom
    record = _record(held_out)
    assert sorted(p for p, o in record["slice_order"].items() if o["flipped"]) == sorted(
        s for s, v in vendors.items() if v != "D")
    for sid, meta in metas.items():
        gt = _array(_subject_folder(root, sid) / f"{sid}_sa_gt.nii.gz")
        sub = "Ts" if sid in record["test"] else "Tr"
        for phase, frame in (("ED", meta.ed_frame), ("ES", meta.es_frame)):
            source = gt[frame - 1][::-1] if meta.apex_first else gt[frame - 1]
            out = _array(held_out / f"labels{sub}" / f"{sid}_{phase}.nii.gz")
            assert np.array_equal(out == 3, source == 1) and np.array_equal(out == 1, source == 3)
            assert np.array_equal(out == 2, source == 2) and set(np.unique(out)) == {0, 1, 2, 3}
        ed = _array(held_out / f"labels{sub}" / f"{sid}_ED.nii.gz")
        area = np.isin(ed, (2, 3)).sum(axis=(1, 2))
        assert area[0] > area[-1], (sid, area)  # base first after conversion


def test_unlabeled_frames_are_the_cine_of_train_val_subjects(held_out, phantom):
    root, metas, _ = phantom
    record = _record(held_out)
    sid = record["train"][0]
    cine = _array(_subject_folder(root, sid) / f"{sid}_sa.nii.gz")
    for n in range(1, N_FRAMES + 1):
        frame = _array(held_out / "unlabeledTr" / f"{sid}_t{n:02d}_0000.nii.gz")
        assert np.array_equal(frame, cine[n - 1][::-1] if metas[sid].apex_first else cine[n - 1])
    assert not any(p.name.startswith(tuple(record["test"])) for p in (held_out / "unlabeledTr").iterdir())


def test_3d_variant_with_results_csv(tmp_path, phantom):
    root = tmp_path / "mnms3d"
    metas = {m.patient_id: m for m in make_mnms_phantom(root, n_patients=4, seed=0, n_frames=N_FRAMES, variant="3d")}
    out = convert_mnms(root, 981, split="2:1:1", raw_root=tmp_path / "raw")
    record = _record(out)
    assert sorted(record["mnms"]) == sorted(metas) and sorted(record["missing_cine"]) == sorted(
        record["train"] + record["val"])
    assert {s: m["vendor"] for s, m in record["mnms"].items()} == {"M001": "A", "M002": "B", "M003": "C", "M004": "D"}
    assert all(not m["frames_known"] and (m["ed_frame"], m["es_frame"]) == (1, 2) for m in record["mnms"].values())
    assert sorted(p for p, o in record["slice_order"].items() if o["flipped"]) == ["M001", "M002", "M003"]
    # the same subject in both layouts gives the same labeled case
    four_d = convert_mnms(phantom[0], 982, split="6:1:1", raw_root=tmp_path / "raw")
    rec4 = _record(four_d)
    for sid in ("M001", "M004"):
        a = next(out.glob(f"labels*/{sid}_ED.nii.gz"))
        b = next(four_d.glob(f"labels*/{sid}_ED.nii.gz"))
        assert np.array_equal(_array(a), _array(b)) and rec4["slice_order"][sid]["flipped"] == (sid == "M001")


def _drop_csv_frames(root: Path) -> None:
    path = root / "mnms_info.csv"
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows[3][4] = ""
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _wrong_frame(root: Path) -> None:  # a 1-based CSV: ES points at an unlabeled frame
    path = root / "mnms_info.csv"
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows[1][5] = str(int(rows[1][5]) + 1)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _bad_label(root: Path) -> None:
    path = _subject_folder(root, "M002") / "M002_sa_gt.nii.gz"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0, 0] = 5
    out = sitk.GetImageFromArray(array, isVector=False)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def _short_gt(root: Path) -> None:
    path = _subject_folder(root, "M003") / "M003_sa_gt.nii.gz"
    image = sitk.ReadImage(str(path))
    sitk.WriteImage(image[:, :-1, :, :], str(path))


BAD = {
    "no ED in CSV": (_drop_csv_frames, [], r"M003: M003_sa.nii.gz is 4D but the information CSV .* gives no ED and ES"),
    "frame not labeled": (_wrong_frame, [], r"M001: no labeled voxel at ES frame \d \(CSV index \d\) of M001_sa_gt"),
    "label value": (_bad_label, [], r"M002: M002_sa_gt.nii.gz has label values not named in --labels .*: 5"),
    "image/label grid": (_short_gt, [], r"M003: image M003_sa.nii.gz and label M003_sa_gt.nii.gz differ in size"),
    "unknown vendor": (lambda root: None, ["--split", "vendor:X"],
                       r"--split vendor:X: no subject of vendor 'X'; vendors found: A, B, C, D"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_a_one_line_error_and_leaves_nothing(copy, tmp_path, capsys, monkeypatch, kind):
    damage, extra, message = BAD[kind]
    damage(copy)
    assert_one_line_error_and_nothing_left(["convert-mnms", str(copy), "-d", "983", *extra], message, tmp_path / "raw",
                                           capsys, monkeypatch)


def test_missing_3d_label_file_is_named(tmp_path):
    root = tmp_path / "mnms3d"
    make_mnms_phantom(root, n_patients=4, seed=0, n_frames=N_FRAMES, variant="3d")
    (root / "worse_M002_sa_ES_gt.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"M002: ES label file missing"):
        convert_mnms(root, 984, raw_root=tmp_path / "raw")
    assert_nothing_left(tmp_path / "raw")


@pytest.mark.parametrize("layout", ["acdc", "folder", "mnms", "mnms3d", "mnms2"])
def test_make_phantom_writes_every_layout(tmp_path, capsys, layout):
    out = tmp_path / layout
    assert main(["make-phantom", str(out), "--layout", layout, "--patients", "2", "--frames", "3",
                 "--difficulty", "easy"]) == 0
    expected = {"acdc": "training/patient001/patient001_4d.nii.gz", "folder": "cases.csv",
                "mnms": "Training/Labeled/M001/M001_sa_gt.nii.gz", "mnms3d": "better_M001_sa_ED_gt.nii.gz",
                "mnms2": "001/001_SA_CINE.nii.gz"}
    assert (out / expected[layout]).is_file()
    names = {"acdc": "", "folder": "folder-layout ", "mnms": "M&Ms-layout ", "mnms3d": "M&Ms 3D-layout ",
             "mnms2": "M&Ms-2-layout "}
    assert f"2 easy {names[layout]}phantom patients written" in capsys.readouterr().out


def test_subject_without_labels_is_skipped_and_recorded(copy, tmp_path, caplog):
    (_subject_folder(copy, "M005") / "M005_sa_gt.nii.gz").unlink()
    with caplog.at_level("WARNING"):
        out = convert_mnms(copy, 985, split="6:1:0", raw_root=tmp_path / "raw")
    record = _record(out)
    assert "M005" not in record["mnms"] and len(record["mnms"]) == N_PATIENTS - 1
    assert record["mnms_source"]["unlabeled_skipped"] == ["M005"]
    assert "skipped 1 M&Ms subject(s) without labels (no _sa_gt.nii.gz, or a cine without ED/ES files): M005" \
        in caplog.text
