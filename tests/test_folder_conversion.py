"""convert-folder on the ``folder`` phantom (LV + MYO only): pattern and table, label remapping, slice order,
splits, and every bad input as a one-line error that leaves nothing in nnUNet_raw."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.conversion import convert_folder
from nnunetv2_glrp.conversion.label_map import parse_labels
from nnunetv2_glrp.conversion.phantom_layouts import make_folder_phantom
from conversion_checks import assert_one_line_error_and_nothing_left

N_PATIENTS, N_FRAMES = 6, 3
LV_MYO = "background=0,LV=1,MYO=2"
PATTERN = dict(pattern="{patient}/{patient}_frame{frame}.nii.gz", cine_pattern="{patient}/{patient}_cine.nii.gz")


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("folder_phantom") / "folder"
    metas = make_folder_phantom(root, n_patients=N_PATIENTS, seed=0, n_frames=N_FRAMES)
    return root, {m.patient_id: m for m in metas}


@pytest.fixture(scope="module")
def dataset(phantom, tmp_path_factory):
    return convert_folder(phantom[0], 970, LV_MYO, **PATTERN, split="4:1:1",
                          raw_root=tmp_path_factory.mktemp("raw"))


@pytest.fixture
def copy(phantom, tmp_path):
    root = tmp_path / "folder"
    shutil.copytree(phantom[0], root)
    return root


def test_counts_labels_and_split(dataset, phantom):
    record = json.loads((dataset / "glrp_split.json").read_text(encoding="utf-8"))
    info = json.loads((dataset / "dataset.json").read_text(encoding="utf-8"))
    assert info["labels"] == {"background": 0, "LV": 1, "MYO": 2}
    sets = [record[s] for s in ("train", "val", "test")]
    assert [len(s) for s in sets] == [4, 1, 1] and sorted(sum(sets, [])) == sorted(phantom[1])
    pool = record["train"] + record["val"]
    assert info["numTraining"] == 2 * len(pool) == len(list((dataset / "labelsTr").iterdir()))
    assert info["numTest"] == 2 == len(list((dataset / "labelsTs").iterdir()))
    unlabeled = sorted(p.name for p in (dataset / "unlabeledTr").iterdir())
    assert unlabeled == sorted(f"{p}_t{n:02d}_0000.nii.gz" for p in pool for n in range(1, N_FRAMES + 1))
    assert info["numUnlabeled"] == len(unlabeled) and record["missing_cine"] == []
    values = set()
    for path in (dataset / "labelsTr").iterdir():
        values |= set(np.unique(_array(path)).tolist())
    assert values == {0, 1, 2}


def test_labels_geometry_and_base_first_order(dataset, phantom):
    """Every converted label is the source label (reversed along z for the apex-first patient) on the source grid
    with its physical positions kept; the apex-first patient alone is flipped, and its stack now starts at the base."""
    root, metas = phantom
    record = json.loads((dataset / "glrp_split.json").read_text(encoding="utf-8"))
    flipped = sorted(p for p, o in record["slice_order"].items() if o["flipped"])
    assert flipped == sorted(p for p, m in metas.items() if m.apex_first) and flipped
    for pid, meta in metas.items():
        sub = "Ts" if pid in record["test"] else "Tr"
        for phase, frame in (("ED", meta.ed_frame), ("ES", meta.es_frame)):
            source = sitk.ReadImage(str(root / pid / f"{pid}_frame{frame:02d}_gt.nii.gz"))
            out = sitk.ReadImage(str(dataset / f"labels{sub}" / f"{pid}_{phase}.nii.gz"))
            expected = sitk.GetArrayFromImage(source)[::-1] if meta.apex_first else sitk.GetArrayFromImage(source)
            assert np.array_equal(sitk.GetArrayFromImage(out), expected), (pid, phase)
            assert np.allclose(out.GetSpacing(), source.GetSpacing())
            z = source.GetSize()[2] - 1 if meta.apex_first else 0  # the base slice's first voxel, same place
            assert np.allclose(out.TransformIndexToPhysicalPoint((0, 0, 0)),
                               source.TransformIndexToPhysicalPoint((0, 0, z)))
        ed = _array(dataset / f"labels{sub}" / f"{pid}_ED.nii.gz")
        area = (ed > 0).sum(axis=(1, 2))
        assert area[0] > area[-1], (pid, area)  # base first


def test_pattern_and_table_give_the_same_cases(dataset, phantom, tmp_path):
    out = convert_folder(phantom[0], 971, LV_MYO, table=phantom[0] / "cases.csv", split="4:1:1", raw_root=tmp_path)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "unlabeledTr"):
        names = sorted(p.name for p in (dataset / sub).iterdir())
        assert names == sorted(p.name for p in (out / sub).iterdir())
        for name in names[:4]:
            assert np.array_equal(_array(dataset / sub / name), _array(out / sub / name))


def test_labels_are_renumbered_in_the_order_given(dataset, phantom, tmp_path):
    out = convert_folder(phantom[0], 972, "background=0,MYO=2,LV=1", **PATTERN, split="4:1:1", raw_root=tmp_path)
    assert json.loads((out / "dataset.json").read_text(encoding="utf-8"))["labels"] == {"background": 0, "MYO": 1,
                                                                                        "LV": 2}
    for path in sorted((dataset / "labelsTr").iterdir())[:4]:
        a, b = _array(path), _array(out / "labelsTr" / path.name)
        assert np.array_equal(b == 1, a == 2) and np.array_equal(b == 2, a == 1)
    # MYO folded into background: an LV-only dataset
    lv = convert_folder(phantom[0], 973, "background=0+2,LV=1", **PATTERN, split="4:1:1", raw_root=tmp_path)
    for path in sorted((dataset / "labelsTr").iterdir())[:4]:
        assert np.array_equal(_array(lv / "labelsTr" / path.name), (_array(path) == 1).astype(np.uint8))


def test_slice_order_option_decides_only_where_the_labels_cannot(phantom, tmp_path):
    """Names the slice-order rule does not know: undecided, kept as stored unless --slice_order says otherwise."""
    labels = "background=0,cavity=1,wall=2"
    kept = convert_folder(phantom[0], 974, labels, **PATTERN, split="4:1:1", raw_root=tmp_path)
    order = json.loads((kept / "glrp_split.json").read_text(encoding="utf-8"))["slice_order"]
    assert all(o["stored"] == "undecided" and not o["flipped"] for o in order.values())
    told = convert_folder(phantom[0], 975, labels, **PATTERN, split="4:1:1", raw_root=tmp_path,
                          slice_order="apex-first")
    order = json.loads((told / "glrp_split.json").read_text(encoding="utf-8"))["slice_order"]
    assert all(o["stored"] == "apex-first" and o["flipped"] for o in order.values())
    # decisive labels win over the option
    decided = convert_folder(phantom[0], 976, LV_MYO, **PATTERN, split="4:1:1", raw_root=tmp_path,
                             slice_order="apex-first")
    order = json.loads((decided / "glrp_split.json").read_text(encoding="utf-8"))["slice_order"]
    assert sorted(p for p, o in order.items() if o["flipped"]) == sorted(p for p, m in phantom[1].items() if m.apex_first)


def test_phase_pattern_without_cine_uses_ed_and_es_as_unlabeled(phantom, tmp_path):
    root = tmp_path / "phases"
    for meta in phantom[1].values():
        pid = meta.patient_id
        for phase, frame in (("ED", meta.ed_frame), ("ES", meta.es_frame)):
            for suffix in ("", "_gt"):
                (root / pid).mkdir(parents=True, exist_ok=True)
                shutil.copy(phantom[0] / pid / f"{pid}_frame{frame:02d}{suffix}.nii.gz", root / pid / f"{phase}{suffix}.nii.gz")
    out = convert_folder(root, 977, LV_MYO, pattern="{patient}/{phase}.nii.gz", split="4:1:1", raw_root=tmp_path / "raw")
    record = json.loads((out / "glrp_split.json").read_text(encoding="utf-8"))
    pool = record["train"] + record["val"]
    assert sorted(record["missing_cine"]) == sorted(pool)
    assert sorted(p.name for p in (out / "unlabeledTr").iterdir()) == sorted(
        f"{p}_t{n:02d}_0000.nii.gz" for p in pool for n in (1, 2))


def _drop_label(root: Path) -> None:
    (root / "patient003" / "patient003_frame01_gt.nii.gz").unlink()


def _bad_label_value(root: Path) -> None:
    path = root / "patient003" / "patient003_frame01_gt.nii.gz"
    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)
    array[0, 0, 0] = 7
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    sitk.WriteImage(out, str(path))


def _short_cine(root: Path) -> None:
    path = root / "patient003" / "patient003_cine.nii.gz"
    image = sitk.ReadImage(str(path))
    sitk.WriteImage(image[:, :, :-1, :], str(path))


def _missing_row_file(root: Path) -> None:
    rows = list(csv.reader((root / "cases.csv").read_text(encoding="utf-8").splitlines()))
    rows[3][2] = "patient002/nothing_here.nii.gz"
    with open(root / "cases.csv", "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)


def _third_frame(root: Path) -> None:
    for suffix in ("", "_gt"):
        shutil.copy(root / "patient003" / f"patient003_frame01{suffix}.nii.gz",
                    root / "patient003" / f"patient003_frame03{suffix}.nii.gz")


BAD = {
    "missing label": (_drop_label, "pattern", r"patient003: ED label file missing: .*patient003_frame01_gt.nii.gz"),
    "label value": (_bad_label_value, "pattern",
                    r"patient003: patient003_frame01_gt.nii.gz has label values not named in --labels .*: 7"),
    "3D/4D mismatch": (_short_cine, "pattern", r"patient003: cine patient003_cine.nii.gz frames have size .*3D/4D"),
    "CSV row missing file": (_missing_row_file, "table", r"cases.csv line 4: patient002: image file missing: .*nothing_here"),
    "three labeled frames": (_third_frame, "pattern", r"patient003: 3 labeled frame\(s\) listed"),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_input_is_a_one_line_error_naming_the_case_and_leaves_nothing(copy, tmp_path, capsys, monkeypatch, kind):
    damage, mode, message = BAD[kind]
    damage(copy)
    source = (["--pattern", PATTERN["pattern"], "--cine_pattern", PATTERN["cine_pattern"]] if mode == "pattern"
              else ["--table", str(copy / "cases.csv")])
    argv = ["convert-folder", str(copy), "-d", "978", "--labels", LV_MYO, "--split", "4:1:1", *source]
    assert_one_line_error_and_nothing_left(argv, message, tmp_path / "raw", capsys, monkeypatch)


@pytest.mark.parametrize("text,message", [
    ("LV=1,MYO=2", "must name 'background'"),
    ("background=0,LV=1,MYO=1", "source value 1 is given to both 'LV' and 'MYO'"),
    ("background=0,LV=x", "non-negative integers"),
    ("background=0,LV=1,lv=2", "'lv' is given twice"),
])
def test_labels_option_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_labels(text)


def test_table_rows_may_point_into_a_4d_image_which_is_then_the_cine(dataset, phantom, tmp_path):
    """image = the 4D cine and the row's frame: the labeled image is that frame, the cine the unlabeled pool."""
    root, metas = phantom
    rows = [["patient", "frame", "image", "label"]]
    for pid, meta in metas.items():
        for frame in (meta.ed_frame, meta.es_frame):
            rows.append([pid, frame, f"{pid}/{pid}_cine.nii.gz", f"{pid}/{pid}_frame{frame:02d}_gt.nii.gz"])
    table = tmp_path / "cine_rows.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    out = convert_folder(root, 979, LV_MYO, table=table, split="4:1:1", raw_root=tmp_path / "raw")
    for sub in ("imagesTr", "imagesTs", "labelsTr", "unlabeledTr"):
        names = sorted(p.name for p in (dataset / sub).iterdir())
        assert names == sorted(p.name for p in (out / sub).iterdir())
        for name in names:
            assert np.array_equal(_array(dataset / sub / name), _array(out / sub / name)), (sub, name)
    rec = json.loads((out / "glrp_split.json").read_text(encoding="utf-8"))
    assert all(f["cine"].endswith("_cine.nii.gz") for f in rec["folder"].values())


def test_acdc_files_through_convert_folder_match_convert_acdc(tmp_path):
    """The ACDC phantom's training/ folder read by a pattern with ACDC's full label set gives, case by case,
    what convert-acdc writes (same slice order decisions with the RV cue, same labels, same cine frames)."""
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom

    root = tmp_path / "acdc"
    make_phantom(root, n_patients=7, seed=3, n_frames=N_FRAMES)
    shutil.rmtree(root / "testing")
    acdc = convert_acdc(root, 986, split="5:1:1", raw_root=tmp_path / "raw")
    folder = convert_folder(root, 987, "background=0,RV=1,MYO=2,LV=3",
                            pattern="training/{patient}/{patient}_frame{frame}.nii.gz",
                            cine_pattern="training/{patient}/{patient}_4d.nii.gz", split="5:1:1", raw_root=tmp_path / "raw")
    a, b = (json.loads((d / "glrp_split.json").read_text(encoding="utf-8")) for d in (acdc, folder))
    assert json.loads((folder / "dataset.json").read_text(encoding="utf-8"))["labels"] == {
        "background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert {s: a[s] for s in ("train", "val", "test")} == {s: b[s] for s in ("train", "val", "test")}
    assert a["slice_order"] == b["slice_order"] and any(o["flipped"] for o in a["slice_order"].values())
    names = sorted(p.relative_to(acdc).as_posix() for p in acdc.rglob("*.nii.gz"))
    assert names == sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nii.gz"))
    for name in names:
        x, y = sitk.ReadImage(str(acdc / name)), sitk.ReadImage(str(folder / name))
        assert np.array_equal(sitk.GetArrayFromImage(x), sitk.GetArrayFromImage(y)), name
        assert np.allclose(x.GetOrigin(), y.GetOrigin()) and np.allclose(x.GetDirection(), y.GetDirection())
