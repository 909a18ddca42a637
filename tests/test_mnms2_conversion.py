"""convert-mnms on the M&Ms-2 layout (``<id>/<id>_SA_ED.nii.gz`` + ``_gt``, ES alike, ``_SA_CINE.nii.gz``,
long-axis ``_LA_`` files, ``dataSet_info.csv`` without ED/ES): ED/ES frames found in the cine, every cine
frame unlabeled, numeric subject codes matched without zero padding, and the errors."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.conversion import convert_mnms
from nnunetv2_glrp.conversion.frames import matching_frame
from nnunetv2_glrp.conversion.phantom_layouts import make_mnms_phantom
from conversion_checks import assert_nothing_left, assert_one_line_error_and_nothing_left
from conversion_checks import read_array as _array, split_record as _record

N_PATIENTS, N_FRAMES = 5, 4


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("mnms2_phantom") / "mnms2"
    metas = make_mnms_phantom(root, n_patients=N_PATIENTS, seed=3, n_frames=N_FRAMES, variant="mnms2")
    vendors = json.loads((root / "phantom.json").read_text(encoding="utf-8"))["vendors"]
    return root, {m.patient_id: m for m in metas}, vendors


@pytest.fixture(scope="module")
def converted(phantom, tmp_path_factory):
    return convert_mnms(phantom[0], 970, split="3:1:1", seed=0, raw_root=tmp_path_factory.mktemp("raw"))


@pytest.fixture
def copy(phantom, tmp_path):
    root = tmp_path / "mnms2"
    shutil.copytree(phantom[0], root)
    return root


def test_frames_found_in_the_cine_and_vendor_by_numeric_code(converted, phantom):
    root, metas, vendors = phantom
    record = _record(converted)
    assert sorted(record["mnms"]) == sorted(metas) == ["001", "002", "003", "004", "005"]
    assert not record["missing_cine"] and record["mnms_source"]["csv_only"] == 0
    assert any(m.es_frame != 2 for m in metas.values())  # else "unknown: ED 1, ES 2" would pass too
    for sid, meta in metas.items():
        entry = record["mnms"][sid]
        assert (entry["ed_frame"], entry["es_frame"], entry["frames_from"]) == (meta.ed_frame, meta.es_frame, "cine")
        assert entry["vendor"] == vendors[sid]  # dataSet_info.csv lists subject 001 as 1
        assert entry["files"]["cine"].endswith(f"{sid}_SA_CINE.nii.gz")
        assert not any("_LA_" in f for f in entry["files"].values())
    assert not any("LA" in c for c in record["cases"])


def test_labeled_cases_and_every_cine_frame_as_in_the_source(converted, phantom):
    """Each label is the M&Ms-2 label (1 LV, 2 MYO, 3 RV, stored as float) in ACDC's numbering, each
    unlabeled frame the cine's frame of that number, both reversed along z where the stack was apex-first."""
    root, metas, _ = phantom
    record = _record(converted)
    assert sorted(p for p, o in record["slice_order"].items() if o["flipped"]) == sorted(
        s for s, m in metas.items() if m.apex_first)
    for sid, meta in metas.items():
        flip = (lambda a: a[::-1]) if meta.apex_first else (lambda a: a)
        sub = "Ts" if sid in record["test"] else "Tr"
        for phase in ("ED", "ES"):
            source = flip(_array(root / sid / f"{sid}_SA_{phase}_gt.nii.gz"))
            out = _array(converted / f"labels{sub}" / f"{sid}_{phase}.nii.gz")
            assert np.array_equal(out == 3, source == 1) and np.array_equal(out == 1, source == 3)
            assert np.array_equal(out == 2, source == 2)
        if sid in record["test"]:
            assert not list((converted / "unlabeledTr").glob(f"{sid}_t*"))
            continue
        cine = _array(root / sid / f"{sid}_SA_CINE.nii.gz")
        for n in range(1, N_FRAMES + 1):
            assert np.array_equal(_array(converted / "unlabeledTr" / f"{sid}_t{n:02d}_0000.nii.gz"), flip(cine[n - 1]))
            assert record["cases"][f"{sid}_t{n:02d}"]["phase"] == {meta.ed_frame: "ED", meta.es_frame: "ES"}.get(n)


def test_csv_frames_are_used_when_given(copy, tmp_path, phantom):
    _, metas, _ = phantom
    path = copy / "dataSet_info.csv"
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    rows = [rows[0] + ["ED", "ES"]] + [r + [str(metas[f"{int(r[0]):03d}"].ed_frame - 1),
                                            str(metas[f"{int(r[0]):03d}"].es_frame - 1)] for r in rows[1:]]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    record = _record(convert_mnms(copy, 971, split="3:1:1", raw_root=tmp_path / "raw"))
    assert {m["frames_from"] for m in record["mnms"].values()} == {"csv"}
    assert all(record["mnms"][s]["es_frame"] == m.es_frame for s, m in metas.items())


def test_image_that_is_no_cine_frame_is_a_one_line_error(copy, tmp_path, capsys, monkeypatch):
    path = copy / "002" / "002_SA_ES.nii.gz"
    image = sitk.ReadImage(str(path))
    noisy = sitk.GetImageFromArray(sitk.GetArrayFromImage(image) * 1.1)
    noisy.CopyInformation(image)
    sitk.WriteImage(noisy, str(path))
    assert_one_line_error_and_nothing_left(
        ["convert-mnms", str(copy), "-d", "972"],
        r"002: the ES image 002_SA_ES.nii.gz equals no single frame of the cine 002_SA_CINE.nii.gz \(closest: .*%",
        tmp_path / "raw", capsys, monkeypatch)


def test_cine_without_labeled_files_is_skipped(copy, tmp_path, caplog):
    for path in (copy / "004").glob("004_SA_E*"):
        path.unlink()
    with caplog.at_level("WARNING"):
        record = _record(convert_mnms(copy, 973, split="2:1:1", raw_root=tmp_path / "raw"))
    assert "004" not in record["mnms"] and record["mnms_source"]["unlabeled_skipped"] == ["004"]
    assert "004" in caplog.text
    shutil.rmtree(tmp_path / "raw")
    (copy / "003" / "003_SA_ED_gt.nii.gz").unlink()
    with pytest.raises(FileNotFoundError, match=r"003: ED label file missing"):
        convert_mnms(copy, 974, raw_root=tmp_path / "raw")
    assert_nothing_left(tmp_path / "raw")


def test_matching_frame_known_answers():
    rng = np.random.default_rng(0)
    cine = [rng.integers(0, 800, size=(3, 5, 6)).astype(np.int16) for _ in range(6)]
    assert matching_frame(cine[4].astype(np.float64), cine) == (5, 0.0)  # another dtype, same values
    number, difference = matching_frame(cine[2] + 0.4, cine)  # within 0.1 % of the range
    assert number == 3 and 0 < difference <= 1e-3
    number, difference = matching_frame(cine[2] * 1.01, cine)
    assert number is None and difference > 1e-3
    assert matching_frame(cine[1], cine[:3] + [cine[1].copy()])[0] is None  # two equal frames: ambiguous
    assert matching_frame(cine[0], [cine[0][:2]] + cine[1:])[0] is None  # another shape never matches
