"""Sunnybrook-layout -> nnU-Net raw conversion (LV + MYO): known masks, geometry, orientation, ED/ES, errors.

The phantom (``make_sunnybrook_phantom``) writes the label maps the reader must produce in ``truth/``;
its patients differ in what a reader can get wrong: oblique orientation, x spacing != y spacing, images
wider than high, instance numbers along or against the slice normal, ED at frame 1 or 3, one patient
stored apex-first (SCD0000201).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.cli import main
from nnunetv2_glrp.conversion import convert_sunnybrook
from nnunetv2_glrp.conversion.orientation import flip_slices, lv_myo_area_per_slice
from nnunetv2_glrp.conversion.phantom_sunnybrook import make_sunnybrook_phantom
from nnunetv2_glrp.conversion.sunnybrook_reader import fill_contour, read_contour

LABELS = {"background": 0, "LV": 1, "MYO": 2}
N_FRAMES = 4


def _arr(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("sunnybrook_phantom")
    meta = make_sunnybrook_phantom(root, n_patients=5, seed=0, n_frames=N_FRAMES)
    assert [p.apex_first for p in meta] == [False, True, False, False, False]
    assert {p.ed_frame for p in meta} == {1, N_FRAMES - 1} and len({p.instances_descending for p in meta}) == 2
    return root, {p.patient_id: p for p in meta}


@pytest.fixture(scope="module")
def dataset(phantom, tmp_path_factory):
    return convert_sunnybrook(phantom[0], 960, split="3:1:1", raw_root=tmp_path_factory.mktemp("raw"))


@pytest.fixture
def copy(phantom, tmp_path):
    root = tmp_path / "sunnybrook"
    shutil.copytree(phantom[0], root)
    return root


def _record(out: Path) -> dict:
    return json.loads((out / "glrp_split.json").read_text())


def _folders(record: dict, pid: str) -> tuple[str, str]:
    return ("imagesTs", "labelsTs") if pid in record["test"] else ("imagesTr", "labelsTr")


def _contours(root: Path, pid: str, kind: str = "*") -> list[Path]:
    link = dict(line.split(",") for line in (root / "link.csv").read_text().split()[1:])
    return sorted((root / "contourfiles" / link[pid]).rglob(f"*-{kind}contour-manual.txt"))


# ---------------------------------------------------------------- contents of the converted phantom

def test_cases_labels_and_split(dataset, phantom):
    record, ds = _record(dataset), json.loads((dataset / "dataset.json").read_text())
    train, val, test = record["train"], record["val"], record["test"]
    assert (len(train), len(val), len(test)) == (3, 1, 1) and set(train + val + test) == set(phantom[1])
    tr = {f"{p}_{ph}" for p in train + val for ph in ("ED", "ES")}
    ts = {f"{p}_{ph}" for p in test for ph in ("ED", "ES")}
    assert _names(dataset / "imagesTr") == {f"{c}_0000.nii.gz" for c in tr}
    assert _names(dataset / "labelsTr") == {f"{c}.nii.gz" for c in tr}
    assert _names(dataset / "imagesTs") == {f"{c}_0000.nii.gz" for c in ts}
    assert _names(dataset / "labelsTs") == {f"{c}.nii.gz" for c in ts}
    assert ds["labels"] == LABELS and ds["numTraining"] == 8 and ds["numTest"] == 2
    assert ds["numUnlabeled"] == 4 * N_FRAMES and ds["channel_names"] == {"0": "cineMRI"}
    for case in tr | ts:
        folder = "labelsTs" if case in ts else "labelsTr"
        values = set(np.unique(_arr(dataset / folder / f"{case}.nii.gz")).tolist())
        assert values == ({0, 1, 2} if case.endswith("_ED") else {0, 1}), case  # ES: endocardium only
        assert record["cases"][case]["labels_present"] == (["LV", "MYO"] if case.endswith("_ED") else ["LV"])
    assert not list(dataset.parent.glob(".Dataset960*"))


def test_unlabeled_frames_only_from_train_val_patients(dataset):
    record = _record(dataset)
    pool = record["train"] + record["val"]
    expected = {f"{p}_t{n:02d}_0000.nii.gz" for p in pool for n in range(1, N_FRAMES + 1)}
    assert _names(dataset / "unlabeledTr") == expected  # none of the test patient
    unlabeled = {c: v for c, v in record["cases"].items() if v["kind"] == "unlabeled"}
    assert all(v["set"] in ("train", "val") for v in unlabeled.values())
    for pid in pool:
        info = record["sunnybrook"][pid]
        assert unlabeled[f"{pid}_t{info['ed_frame']:02d}"]["phase"] == "ED"
        assert unlabeled[f"{pid}_t{info['es_frame']:02d}"]["phase"] == "ES"
        frame = sitk.ReadImage(str(dataset / "unlabeledTr" / f"{pid}_t{info['ed_frame']:02d}_0000.nii.gz"))
        ed = sitk.ReadImage(str(dataset / "imagesTr" / f"{pid}_ED_0000.nii.gz"))
        assert np.array_equal(sitk.GetArrayFromImage(frame), sitk.GetArrayFromImage(ed))
        assert frame.GetOrigin() == ed.GetOrigin() and frame.GetDirection() == ed.GetDirection()


def test_labels_equal_the_phantom_masks_and_geometry_round_trips(dataset, phantom):
    """Every label voxel equals the phantom's own mask; spacing, origin and direction are the phantom's
    (flipped for the apex-first patient); each image slice is the DICOM of that slice and frame."""
    root, meta = phantom
    record = _record(dataset)
    for pid, p in meta.items():
        images, labels = _folders(record, pid)
        flipped = record["slice_order"][pid]["flipped"]
        for phase, frame in (("ED", p.ed_frame), ("ES", p.es_frame)):
            label = sitk.ReadImage(str(dataset / labels / f"{pid}_{phase}.nii.gz"))
            image = sitk.ReadImage(str(dataset / images / f"{pid}_{phase}_0000.nii.gz"))
            truth = sitk.ReadImage(str(root / "truth" / f"{pid}_{phase}.nii.gz"))
            truth = flip_slices(truth) if flipped else truth
            assert np.array_equal(sitk.GetArrayFromImage(label), sitk.GetArrayFromImage(truth)), (pid, phase)
            for got in (label, image):
                assert got.GetSize() == (p.cols, p.rows, p.n_slices)
                assert np.allclose(got.GetSpacing(), truth.GetSpacing(), atol=1e-4)
                assert np.allclose(got.GetOrigin(), truth.GetOrigin(), atol=1e-3)
                assert np.allclose(got.GetDirection(), truth.GetDirection(), atol=1e-5)
            array = sitk.GetArrayFromImage(image)
            for k in (0, p.n_slices - 1):  # slice k in ascending position along the normal
                block = p.n_slices - 1 - k if p.instances_descending else k
                dicom = sitk.ReadImage(str(root / "dicoms" / pid / f"{block * p.n_frames + frame}.dcm"))
                stored = p.n_slices - 1 - k if flipped else k
                assert np.array_equal(array[stored], sitk.GetArrayFromImage(dicom)[0]), (pid, phase, k)
                assert np.allclose(image.TransformIndexToPhysicalPoint((0, 0, stored)), dicom.GetOrigin(), atol=1e-3)


def test_stacks_are_base_first_and_ed_es_come_from_the_contours(dataset, phantom):
    record = _record(dataset)
    for pid, p in phantom[1].items():
        assert record["slice_order"][pid]["flipped"] == p.apex_first, pid
        info = record["sunnybrook"][pid]
        assert (info["ed_frame"], info["es_frame"]) == (p.ed_frame, p.es_frame), pid
        assert "only one with epicardial contours" in info["ed_rule"]
        assert info["lv_ml"]["ED"] > info["lv_ml"]["ES"] > 0
        assert record["cases"][f"{pid}_ED"]["frame"] == p.ed_frame
        assert record["cases"][f"{pid}_ED"]["n_contoured_slices"] == p.n_slices  # easy phantom: LV on every slice
        areas = lv_myo_area_per_slice([_arr(dataset / _folders(record, pid)[1] / f"{pid}_ED.nii.gz")], (1, 2))
        assert np.corrcoef(np.arange(len(areas)), areas)[0, 1] < -0.9, pid  # shrinks from base to apex


# ---------------------------------------------------------------- contour reading: a polygon with a known answer

def test_contour_fill_known_rectangle(tmp_path):
    """x is the column, y the row, pixel centres at integers: the rectangle 9.5..20.5 x 4.5..8.5 covers
    exactly columns 10-20 of rows 5-8 of a 24 x 32 (rows x columns) image; a transposed or shifted
    reading would not."""
    path = tmp_path / "IM-0001-0001-icontour-manual.txt"
    path.write_text("9.50 4.50\n20.50 4.50\n20.50 8.50\n9.50 8.50\n")
    mask = fill_contour(read_contour(path, "P", (24, 32)), (24, 32))
    expected = np.zeros((24, 32), dtype=bool)
    expected[5:9, 10:21] = True
    assert np.array_equal(mask, expected)
    with pytest.raises(ValueError, match=r"P: IM-0001-0001-icontour-manual.txt line 2: contour point \(20.5, 25\) "
                                         r"lies outside the 32 x 24 image"):
        path.write_text("9.50 4.50\n20.50 25\n9.50 8.50\n")
        read_contour(path, "P", (24, 32))


# ---------------------------------------------------------------- variants of the input

def test_ed_from_the_larger_cavity_without_epicardial_contours(copy, phantom, tmp_path):
    pid = "SCD0000201"  # ED at frame 3, apex-first
    for path in _contours(copy, pid, "o"):
        path.unlink()
    out = convert_sunnybrook(copy, 961, split="3:1:1", raw_root=tmp_path / "raw")
    record = _record(out)
    info = record["sunnybrook"][pid]
    assert (info["ed_frame"], info["es_frame"]) == (phantom[1][pid].ed_frame, phantom[1][pid].es_frame)
    assert info["ed_rule"].startswith("no frame has epicardial contours: ED is frame 3, the larger mean LV cavity")
    assert record["cases"][f"{pid}_ED"]["labels_present"] == ["LV"]
    assert set(np.unique(_arr(out / _folders(record, pid)[1] / f"{pid}_ED.nii.gz")).tolist()) == {0, 1}


def test_uncontoured_slice_is_background_and_recorded(copy, phantom, dataset, tmp_path):
    pid, p = "SCD0000201", phantom[1]["SCD0000201"]  # apex-first: stored index = n - 1 - k
    k = 5  # ascending along the normal; instances of this patient run along it
    for kind in ("i", "o"):
        (next(_contours(copy, pid, kind)[0].parent.glob(f"IM-0001-{k * p.n_frames + p.ed_frame:04d}-*"))).unlink()
    out = convert_sunnybrook(copy, 962, split="3:1:1", raw_root=tmp_path / "raw")
    record = _record(out)
    case = record["cases"][f"{pid}_ED"]
    stored = p.n_slices - 1 - k
    assert case["n_contoured_slices"] == p.n_slices - 1 and stored not in case["contoured_slices"]
    folder = _folders(record, pid)[1]
    label, before = _arr(out / folder / f"{pid}_ED.nii.gz"), _arr(dataset / folder / f"{pid}_ED.nii.gz")
    assert not label[stored].any() and before[stored].any()
    others = [z for z in range(p.n_slices) if z != stored]
    assert np.array_equal(label[others], before[others])


def test_layout_without_link_csv_pairs_folders_by_name(copy, dataset, tmp_path):
    for line in (copy / "link.csv").read_text().split()[1:]:
        pid, contour_id = line.split(",")
        (copy / "contourfiles" / contour_id).rename(copy / "contourfiles" / pid)
    (copy / "link.csv").unlink()
    out = convert_sunnybrook(copy, 963, split="3:1:1", raw_root=tmp_path / "raw")
    for case in sorted((dataset / "labelsTr").iterdir()):
        assert np.array_equal(_arr(out / "labelsTr" / case.name), _arr(case)), case.name


def test_realistic_phantom_leaves_slices_above_the_base_uncontoured(tmp_path):
    root = tmp_path / "realistic"
    meta = make_sunnybrook_phantom(root, n_patients=2, seed=3, n_frames=3, difficulty="realistic")
    out = convert_sunnybrook(root, 964, split="1:1:0", raw_root=tmp_path / "raw")
    record = _record(out)
    for p in meta:
        case = record["cases"][f"{p.patient_id}_ED"]
        above = p.n_slices - case["n_contoured_slices"]
        assert above in (1, 2)  # the phantom's unlabelled slices above the base ...
        assert case["contoured_slices"] == list(range(above, p.n_slices))  # ... stored first (base-first)


# ---------------------------------------------------------------- bad input: clear errors, nothing left behind

def _corrupt(root: Path, kind: str) -> None:
    pid = "SCD0000101"  # sorted first: converted first; 8 slices of 126 x 141, ED frame 1, ES frame 2
    dicoms, icontours = root / "dicoms" / pid, _contours(root, pid, "i")
    if kind == "no-dicom":
        for path in dicoms.glob("*.dcm"):
            path.unlink()
    elif kind == "missing-image":
        (dicoms / "7.dcm").unlink()
    elif kind == "duplicate-instance":
        shutil.copy(dicoms / "7.dcm", dicoms / "extra.dcm")
    elif kind == "garbled-dicom":
        (dicoms / "7.dcm").write_bytes(b"not a DICOM file" * 20)
    elif kind == "uneven-gap":
        for path in sorted(dicoms.glob("*.dcm"), key=lambda q: int(q.stem))[-N_FRAMES:]:  # one whole slice
            image = sitk.ReadImage(str(path))
            normal = np.array(image.GetDirection()).reshape(3, 3)[:, 2]
            moved = np.array(image.GetOrigin()) + 3.0 * normal
            image.SetMetaData("0020|0032", "\\".join(f"{v:.4f}" for v in moved))  # the tag wins over the origin
            writer = sitk.ImageFileWriter()
            writer.KeepOriginalImageUIDOn()
            writer.SetFileName(str(path))
            writer.Execute(image)
    elif kind == "contour-outside":
        icontours[0].write_text("10 10\n200 10\n10 20\n")
    elif kind == "garbled-contour":
        icontours[0].write_text("10 10\n20 10\n12.5\n")
    elif kind == "unknown-instance":
        shutil.copy(icontours[0], icontours[0].parent / "IM-0001-9999-icontour-manual.txt")
    elif kind == "no-ed-contours":
        for path in _contours(root, pid):
            if int(path.name.split("-")[2]) % N_FRAMES == 1:  # ED = frame 1
                path.unlink()
    elif kind == "third-frame":
        shutil.copy(icontours[0], icontours[0].parent / "IM-0001-0003-icontour-manual.txt")
    elif kind == "swapped":
        ocontour = _contours(root, pid, "o")[0]
        inner = icontours[0].parent / ocontour.name.replace("ocontour", "icontour")
        text = inner.read_text()
        inner.write_text(ocontour.read_text())
        ocontour.write_text(text)
    elif kind == "no-contour-folder":
        shutil.rmtree(icontours[0].parent.parent)


ERRORS = [
    ("no-dicom", FileNotFoundError, "SCD0000101: no DICOM \\(.dcm\\) file under"),
    ("missing-image", ValueError, r"SCD0000101: inconsistent slice grid: images per slice position \[4, 4, 4, 4, 4, "
                                  r"4, 3, 4\]"),
    ("duplicate-instance", ValueError, "SCD0000101: 7.dcm and extra.dcm have the same instance number 7"),
    ("garbled-dicom", ValueError, "SCD0000101: cannot read DICOM file .*7.dcm"),
    ("uneven-gap", ValueError, r"SCD0000101: inconsistent slice grid: slice gaps \[6.0, 9.0, 9.0, .*\] mm"),
    ("contour-outside", ValueError, r"SCD0000101: IM-0001-0001-icontour-manual.txt line 2: contour point \(200, 10\) "
                                    r"lies outside the 141 x 126 image"),
    ("garbled-contour", ValueError, "SCD0000101: IM-0001-0001-icontour-manual.txt line 3 is not 'x y'"),
    ("unknown-instance", ValueError, "SCD0000101: contour file .*IM-0001-9999-icontour-manual.txt refers to image "
                                     "9999, but no DICOM of SCD0000101 has instance number 9999"),
    ("no-ed-contours", ValueError, r"SCD0000101: contours on 1 cine frame\(s\) under .*SC-PH-1 "
                                   r"\(frame 2: 8 slice\(s\)\); expected exactly two, ED and ES"),
    ("third-frame", ValueError, r"SCD0000101: contours on 3 cine frame\(s\)"),
    ("swapped", ValueError, "SCD0000101: IM-0001-0001-ocontour-manual.txt encloses no more pixels than "
                            r"IM-0001-0001-icontour-manual.txt \(epicardium inside the endocardium: files swapped\?\)"),
    ("no-contour-folder", FileNotFoundError, "SCD0000101: contour folder missing: .*SC-PH-1"),
]


@pytest.mark.parametrize("kind,error,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_is_a_clear_error_and_leaves_nothing(copy, tmp_path, kind, error, message):
    _corrupt(copy, kind)
    raw = tmp_path / "raw"
    with pytest.raises(error, match=message):
        convert_sunnybrook(copy, 965, split="3:1:1", raw_root=raw)
    assert not raw.exists() or not list(raw.iterdir())


def test_official_split_is_refused_and_overwrite_replaces(phantom, tmp_path):
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match="split='official' exists for ACDC only"):
        convert_sunnybrook(phantom[0], 966, split="official", raw_root=raw)
    out = convert_sunnybrook(phantom[0], 966, split="3:1:1", raw_root=raw)
    with pytest.raises(FileExistsError, match="already exists"):
        convert_sunnybrook(phantom[0], 966, raw_root=raw)
    assert convert_sunnybrook(phantom[0], 966, split="2:1:2", seed=1, raw_root=raw, overwrite=True) == out
    assert _record(out)["split"] == "2:1:2" and sorted(p.name for p in raw.iterdir()) == [out.name]


def test_cli_make_phantom_and_convert(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    ph = tmp_path / "ph"
    assert main(["make-phantom", str(ph), "--layout", "sunnybrook", "--patients", "2", "--frames", "3",
                 "--difficulty", "easy", "--first_patient", "2"]) == 0
    assert "2 easy Sunnybrook-layout phantom patients" in capsys.readouterr().out
    assert (ph / "link.csv").read_text() == "patient_id,original_id\nSCD0000201,SC-PH-2\nSCD0000301,SC-PH-3\n"
    assert main(["convert-sunnybrook", str(ph), "-d", "967", "--split", "1:1:0", "--name", "Cli"]) == 0
    assert "flipped to base-first: SCD0000201" in capsys.readouterr().out
    assert json.loads((tmp_path / "raw/Dataset967_Cli/dataset.json").read_text())["labels"] == LABELS
    assert main(["convert-sunnybrook", str(tmp_path / "nowhere"), "-d", "968"]) == 2
    assert "Sunnybrook root folder not found" in capsys.readouterr().err


def test_lv_myo_dataset_goes_through_prepare(phantom):
    """The LV + MYO dataset (no RV) is fingerprinted, planned, preprocessed (labeled + unlabeled) with the
    nnunet_cpu overlay and split like ACDC's (about 25 s on 2 busy cores)."""
    import os

    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    out = convert_sunnybrook(phantom[0], 969, split="3:1:1")  # into the session's nnUNet_raw
    assert prepare_dataset(969, overlay="nnunet_cpu", num_processes=1) == "nnunet_cpu"
    pre = Path(os.environ["nnUNet_preprocessed"]) / out.name
    record = _record(out)
    assert json.loads((pre / "dataset.json").read_text())["labels"] == LABELS
    assert "nnunet_cpu" in json.loads((pre / "nnUNetPlans.json").read_text())["configurations"]
    labeled = {f"{p}_{phase}" for p in record["train"] + record["val"] for phase in ("ED", "ES")}
    assert {p.stem for p in (pre / "nnUNetPlans_nnunet_cpu").glob("*.pkl")} == labeled
    assert {p.stem for p in (pre / "nnUNetPlans_nnunet_cpu_unlabeled").glob("*.pkl")} == {
        c for c, v in record["cases"].items() if v["kind"] == "unlabeled"}
    folds = json.loads((pre / "splits_final.json").read_text())
    assert folds[0]["val"] == sorted(f"{p}_{phase}" for p in record["val"] for phase in ("ED", "ES"))
