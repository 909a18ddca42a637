"""Clinical indices in ``evaluate``: values against an independent voxel count, agreement statistics against
numpy / ``statistics``, label sets and skipped patients."""

import csv
import json
import math
import statistics

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunetv2_glrp.agreement import agreement
from nnunetv2_glrp.evaluate import evaluate_folder, labels_from_dataset_json

SPACING = (1.5, 1.25, 8.0)  # x, y, z in mm (SimpleITK order); anisotropic on purpose
VOXEL_ML = 1.5 * 1.25 * 8.0 / 1000.0  # written out, not taken from the code under test
QUANTITIES = ["LV_EDV_ml", "LV_ESV_ml", "LV_SV_ml", "LV_EF_pct", "RV_EDV_ml", "RV_ESV_ml", "RV_SV_ml", "RV_EF_pct",
              "LV_mass_g"]


def _write(path, arr, spacing=SPACING):
    img = sitk.GetImageFromArray(arr.astype(np.uint8))
    img.SetSpacing(spacing)
    sitk.WriteImage(img, str(path))


def _heart(lv_radius, rv_half, rv=1, myo=2, lv=3, shape=(5, 32, 36)):
    """[z, y, x] label map: a disc LV (radius in voxels) inside a 2-voxel MYO ring on slices 1..3, a box RV."""
    arr = np.zeros(shape, np.uint8)
    zz, yy, xx = np.indices(shape)
    r = np.hypot(yy - 16, xx - 22)
    inner = (zz >= 1) & (zz <= 3)
    if myo is not None:
        arr[inner & (r <= lv_radius + 2)] = myo
    arr[inner & (r <= lv_radius)] = lv
    if rv is not None:
        arr[1:4, 16 - rv_half:16 + rv_half, 2:2 + rv_half] = rv
    return arr


# (ED LV radius, ED RV half size, ES LV radius, ES RV half size) per patient
PATIENTS = {"p001": (7, 6, 5, 4), "p002": (8, 7, 5, 5), "p003": (6, 5, 4, 3)}


def _dataset(tmp_path, patients=PATIENTS, **labels):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir(), pred_dir.mkdir()
    arrays = {}
    for pid, (lv_ed, rv_ed, lv_es, rv_es) in patients.items():
        for phase, (lv, rvh) in (("ED", (lv_ed, rv_ed)), ("ES", (lv_es, rv_es))):
            arr = _heart(lv, rvh, **labels)
            arrays[f"{pid}_{phase}"] = arr
            _write(ref_dir / f"{pid}_{phase}.nii.gz", arr)
            _write(pred_dir / f"{pid}_{phase}.nii.gz", arr)
    return pred_dir, ref_dir, arrays


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _independent(ed, es, lv=3, rv=1, myo=2):
    """The indices from two label maps, counted here with numpy (not with the code under test)."""
    out = {}
    for name, value in (("LV", lv), ("RV", rv)):
        if value is None:
            continue
        edv = np.count_nonzero(ed == value) * 1.5 * 1.25 * 8.0 / 1000
        esv = np.count_nonzero(es == value) * 1.5 * 1.25 * 8.0 / 1000
        out.update({f"{name}_EDV_ml": edv, f"{name}_ESV_ml": esv, f"{name}_SV_ml": edv - esv,
                    f"{name}_EF_pct": 100 * (edv - esv) / edv})
    if myo is not None:
        out["LV_mass_g"] = np.count_nonzero(ed == myo) * 1.5 * 1.25 * 8.0 / 1000 * 1.05
    return out


def test_clinical_csv_matches_an_independent_count_and_identity_has_zero_bias(tmp_path):
    pred_dir, ref_dir, arrays = _dataset(tmp_path)
    summary = evaluate_folder(pred_dir, ref_dir, out_dir=tmp_path / "eval")
    text = (tmp_path / "eval" / "clinical.csv").read_text(encoding="utf-8")
    assert text.splitlines()[0] == "patient,quantity,reference,prediction,difference"
    rows = _read_csv(tmp_path / "eval" / "clinical.csv")
    assert len(rows) == 3 * 9 and [r["quantity"] for r in rows[:9]] == QUANTITIES
    for pid in PATIENTS:
        expected = _independent(arrays[f"{pid}_ED"], arrays[f"{pid}_ES"])
        got = {r["quantity"]: r for r in rows if r["patient"] == pid}
        assert set(got) == set(QUANTITIES)
        for q, value in expected.items():
            assert float(got[q]["reference"]) == pytest.approx(value, rel=1e-12), (pid, q)
            assert float(got[q]["prediction"]) == pytest.approx(value, rel=1e-12), (pid, q)
            assert float(got[q]["difference"]) == 0.0
    # a sanity anchor on one number, by hand: p001 ED LV is a radius-7 disc on 3 slices
    disc = np.count_nonzero(np.hypot(*np.indices((32, 36)) - np.array([16, 22])[:, None, None]) <= 7)
    assert float(next(r for r in rows if r["patient"] == "p001" and r["quantity"] == "LV_EDV_ml")["reference"]) \
        == pytest.approx(3 * disc * VOXEL_ML)
    clinical = summary["clinical"]
    assert clinical["n_patients"] == 3 and clinical["skipped"] == {}
    assert list(clinical["quantities"]) == QUANTITIES
    for q, s in clinical["quantities"].items():
        assert s["n"] == 3 and s["bias"] == 0.0 and s["mae"] == 0.0 and s["sd"] == 0.0, q
        assert s["loa_lower"] == 0.0 and s["loa_upper"] == 0.0
        assert s["pearson_r"] == pytest.approx(1.0), q
    for family in ("volumes", "ef", "mass"):
        assert (tmp_path / "eval" / f"bland_altman_{family}.png").read_bytes()[:4] == b"\x89PNG"
    on_disk = json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))
    assert on_disk["clinical"]["quantities"]["LV_EF_pct"]["n"] == 3


def test_lv_eroded_at_es_gives_the_independently_computed_bias(tmp_path):
    """Prediction = reference except at ES, where the LV is eroded by one voxel (scipy's 3D cross) and the
    eroded voxels become background: ESV falls, EF rises, EDV and mass are unchanged."""
    pred_dir, ref_dir, arrays = _dataset(tmp_path)
    esv_diff, ef_diff = [], []
    for pid in PATIENTS:
        ed, es = arrays[f"{pid}_ED"], arrays[f"{pid}_ES"]
        lv = es == 3
        kept = ndimage.binary_erosion(lv)
        pred = es.copy()
        pred[lv & ~kept] = 0
        _write(pred_dir / f"{pid}_ES.nii.gz", pred)
        edv = np.count_nonzero(ed == 3) * VOXEL_ML
        esv_ref, esv_pred = np.count_nonzero(lv) * VOXEL_ML, np.count_nonzero(kept) * VOXEL_ML
        esv_diff.append(esv_pred - esv_ref)
        ef_diff.append(100 * (edv - esv_pred) / edv - 100 * (edv - esv_ref) / edv)
    assert all(d < 0 for d in esv_diff) and all(d > 0 for d in ef_diff)
    stats = evaluate_folder(pred_dir, ref_dir, out_dir=tmp_path / "eval")["clinical"]["quantities"]
    assert stats["LV_ESV_ml"]["bias"] == pytest.approx(np.mean(esv_diff))
    assert stats["LV_ESV_ml"]["mae"] == pytest.approx(np.mean(np.abs(esv_diff)))
    assert stats["LV_EF_pct"]["bias"] == pytest.approx(np.mean(ef_diff))
    assert stats["LV_EF_pct"]["sd"] == pytest.approx(np.std(ef_diff, ddof=1))
    assert stats["LV_SV_ml"]["bias"] == pytest.approx(-np.mean(esv_diff))
    for q in ("LV_EDV_ml", "LV_mass_g", "RV_EDV_ml", "RV_ESV_ml", "RV_EF_pct"):
        assert stats[q]["bias"] == 0.0 and stats[q]["mae"] == 0.0, q
    rows = _read_csv(tmp_path / "eval" / "clinical.csv")
    p1 = next(r for r in rows if r["patient"] == "p001" and r["quantity"] == "LV_ESV_ml")
    assert float(p1["difference"]) == pytest.approx(esv_diff[0])
    assert float(p1["difference"]) == pytest.approx(float(p1["prediction"]) - float(p1["reference"]))


def test_lv_myo_only_labels_from_dataset_json_give_lv_indices_and_mass(tmp_path):
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "LV": 1, "MYO": 2}}), encoding="utf-8")
    labels = labels_from_dataset_json(dataset_json)
    assert labels == {"LV": 1, "MYO": 2}
    pred_dir, ref_dir, arrays = _dataset(tmp_path, rv=None, lv=1, myo=2)
    summary = evaluate_folder(pred_dir, ref_dir, labels=labels, out_dir=tmp_path / "eval")
    expected = ["LV_EDV_ml", "LV_ESV_ml", "LV_SV_ml", "LV_EF_pct", "LV_mass_g"]
    assert list(summary["clinical"]["quantities"]) == expected
    rows = _read_csv(tmp_path / "eval" / "clinical.csv")
    assert sorted({r["quantity"] for r in rows}) == sorted(expected) and len(rows) == 3 * 5
    truth = _independent(arrays["p002_ED"], arrays["p002_ES"], lv=1, rv=None, myo=2)
    mass = next(r for r in rows if r["patient"] == "p002" and r["quantity"] == "LV_mass_g")
    assert float(mass["reference"]) == pytest.approx(truth["LV_mass_g"])



def test_cli_reads_the_labels_from_dataset_json(tmp_path, capsys):
    from nnunetv2_glrp.cli import main

    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "LV": 1, "MYO": 2}}), encoding="utf-8")
    pred_dir, ref_dir, _ = _dataset(tmp_path, rv=None, lv=1, myo=2)
    assert main(["evaluate", str(pred_dir), str(ref_dir), "--dataset_json", str(dataset_json)]) == 0
    out = capsys.readouterr().out
    assert "LV_mass_g (n=3): bias 0.00 g" in out and "RV_" not in out
    assert "mean_dice 1.000: LV 1.000 (n=6); MYO 1.000 (n=6)" in out
    # with ACDC's labels (the default) value 1 is read as the RV and the LV (3) is empty: EF undefined, n = 0
    assert main(["evaluate", str(pred_dir), str(ref_dir)]) == 0
    assert "LV_EF_pct (n=0)" in capsys.readouterr().out


def test_without_myo_there_is_no_mass(tmp_path):
    pred_dir, ref_dir, _ = _dataset(tmp_path, myo=None)
    summary = evaluate_folder(pred_dir, ref_dir, labels={"RV": 1, "LV": 3})
    assert "LV_mass_g" not in summary["clinical"]["quantities"]
    assert len(summary["clinical"]["quantities"]) == 8


def test_a_patient_without_es_is_scored_for_segmentation_and_skipped_for_indices(tmp_path, capsys):
    from nnunetv2_glrp.cli import main

    pred_dir, ref_dir, _ = _dataset(tmp_path)
    for folder in (pred_dir, ref_dir):
        (folder / "p003_ES.nii.gz").unlink()
    assert main(["evaluate", str(pred_dir), str(ref_dir), "-o", str(tmp_path / "eval")]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text(encoding="utf-8"))
    assert summary["n_cases"] == 5
    assert [r["case"] for r in _read_csv(tmp_path / "eval" / "metrics_per_case.csv")] == \
        ["p001_ED", "p001_ES", "p002_ED", "p002_ES", "p003_ED"]
    assert summary["clinical"]["n_patients"] == 2
    assert list(summary["clinical"]["skipped"]) == ["p003"]
    assert "no ES case" in summary["clinical"]["skipped"]["p003"]
    assert {r["patient"] for r in _read_csv(tmp_path / "eval" / "clinical.csv")} == {"p001", "p002"}
    assert "skipped p003: no ES case" in out and "clinical indices of 2 patients" in out
    assert "LV_EF_pct (n=2): bias 0.00 %" in out and "r nan (n = 2 < 3)" in out
    assert "np.float64" not in out


def test_agreement_equals_numpy_and_statistics_on_a_known_set():
    ref = [50.0, 62.5, 48.0, 71.0, 55.5, 60.0]
    pred = [52.0, 60.0, 49.5, 75.0, 54.0, 63.5]
    diff = [p - r for p, r in zip(pred, ref)]
    s = agreement(ref, pred)
    bias, sd = statistics.mean(diff), statistics.stdev(diff)
    assert s["n"] == 6 and s["bias"] == pytest.approx(bias) and s["sd"] == pytest.approx(sd)
    assert s["loa_lower"] == pytest.approx(bias - 1.96 * sd) and s["loa_upper"] == pytest.approx(bias + 1.96 * sd)
    assert s["mae"] == pytest.approx(statistics.mean(abs(d) for d in diff))
    assert s["pearson_r"] == pytest.approx(np.corrcoef(ref, pred)[0, 1])
    assert s["pearson_r"] == pytest.approx(statistics.correlation(ref, pred))
    assert all(type(v) in (int, float) for v in s.values())
    # undefined cases: NaN with the reason
    few = agreement([1.0, 2.0], [1.5, 2.0])
    assert math.isnan(few["pearson_r"]) and few["pearson_r_note"] == "n = 2 < 3"
    flat = agreement([3.0, 3.0, 3.0], [1.0, 2.0, 4.0])
    assert math.isnan(flat["pearson_r"]) and flat["pearson_r_note"] == "zero variance in the reference"
    one = agreement([1.0], [2.0])
    assert one["bias"] == 1.0 and math.isnan(one["sd"]) and math.isnan(one["loa_upper"])
    # non-finite pairs (EF of an empty EDV) are left out and counted
    gap = agreement([1.0, math.nan, 2.0], [1.0, 5.0, 3.0])
    assert gap["n"] == 2 and gap["n_left_out"] == 1 and gap["bias"] == pytest.approx(0.5)
