"""k-patient draws (nested across k, method-independent, seeded, loud when k is too large) and
patient-level folds (a leaking fold is refused; a missing splits_final.json is written per patient)."""

from __future__ import annotations

import hashlib
import json

import pytest

from nnunetv2_glrp.finetuning.patient_draw import (
    PAPER_K_VALUES, check_patient_level_split, count_patients, draw_patients, ensure_patient_level_splits,
    patients_on_both_sides, select_cases, write_selection,
)
from nnunetv2_glrp.dataset_split import patient_of_case

POOL = [f"patient{i:03d}" for i in range(1, 106)]  # ACDC's 105 training patients
CASES = [f"{p}_{frame}" for p in POOL for frame in ("ED", "ES")]


@pytest.mark.parametrize("fold", [0, 3, "all"])
@pytest.mark.parametrize("seed", [0, 1, 12345])
def test_draws_are_nested_across_k(fold, seed):
    draws = {k: draw_patients(POOL, k, fold, seed) for k in PAPER_K_VALUES}
    for small, large in zip(PAPER_K_VALUES, PAPER_K_VALUES[1:]):
        assert len(draws[small]) == small and len(set(draws[small])) == small
        assert set(draws[small]) < set(draws[large])
        assert draws[large][:small] == draws[small]
    assert sorted(draws[105]) == POOL


def test_draw_depends_on_pool_not_on_its_order():
    shuffled = list(reversed(POOL)) + POOL[:10]  # order and duplicates do not matter
    assert draw_patients(shuffled, 6, 0, 0) == draw_patients(POOL, 6, 0, 0)


def test_draw_changes_with_seed_and_fold():
    base = draw_patients(POOL, 10, 0, 0)
    assert draw_patients(POOL, 10, 0, 0) == base  # reproducible
    assert draw_patients(POOL, 10, 0, 1) != base
    assert draw_patients(POOL, 10, 1, 0) != base
    # not just the sorted head of the pool
    assert base != POOL[:10]


def test_k_too_large_names_k_and_count():
    with pytest.raises(ValueError, match=r"k=8 .*only 7 training patients"):
        draw_patients(POOL[:7], 8, 0, 0)
    with pytest.raises(ValueError, match="k must be a positive"):
        draw_patients(POOL, 0, 0, 0)


def test_select_cases_keeps_both_frames_of_each_patient():
    patients, kept = select_cases(CASES, 6, 0, 0)
    assert len(kept) == 12
    assert {patient_of_case(c) for c in kept} == set(patients)
    assert [c for c in CASES if c in kept] == kept  # original order kept
    assert count_patients(CASES) == 105


def test_patient_of_case_uses_the_split_table_then_the_suffix():
    table = {"caseA": {"patient": "p7", "set": "train", "kind": "labeled"}}
    assert patient_of_case("caseA", table) == "p7"
    assert patient_of_case("patient012_ES", table) == "patient012"
    with pytest.raises(ValueError, match="caseB"):
        patient_of_case("caseB", table)


def test_write_selection_is_atomic_and_refuses_another_draw(tmp_path):
    path = tmp_path / "fold_0" / "k_patients.json"
    record = {"fold": 0, "seed": 0, "k": 2, "patients": draw_patients(POOL, 2, 0, 0)}
    write_selection(path, record)
    write_selection(path, dict(record))  # same draw again: fine (resume, --val)
    assert json.loads(path.read_text()) == record
    assert [p.name for p in path.parent.iterdir()] == ["k_patients.json"]
    other = dict(record, seed=1, patients=draw_patients(POOL, 2, 0, 1))
    with pytest.raises(ValueError, match="another k-patient draw"):
        write_selection(path, other)


def test_a_fold_with_a_patient_on_both_sides_is_refused():
    train, val = ["patient001_ED", "patient002_ED", "patient002_ES"], ["patient001_ES", "patient003_ED"]
    assert patients_on_both_sides(train, val) == {"patient001": (["patient001_ED"], ["patient001_ES"])}
    with pytest.raises(ValueError, match=r"fold 3 of splits_final\.json is not patient-level.*patient001"):
        check_patient_level_split(train, val, 3, "splits_final.json")
    check_patient_level_split(train[1:], val, 3, "splits_final.json")  # patient-level: no error
    # the split table decides over the names: caseA and caseB are one patient
    table = {"caseA": {"patient": "p1"}, "caseB": {"patient": "p1"}, "caseC": {"patient": "p2"}}
    with pytest.raises(ValueError, match=r"p1: train \['caseA'\], val \['caseB'\]"):
        check_patient_level_split(["caseA", "caseC"], ["caseB"], 0, "splits_final.json", table)


DATASET = "Dataset977_Folds"
PATIENTS = [f"patient{i:03d}" for i in range(1, 8)]


def _glrp_split() -> dict:
    cases = {f"{p}_{f}": {"patient": p, "set": "train", "kind": "labeled"} for p in PATIENTS for f in ("ED", "ES")}
    return {"train": PATIENTS[:5], "val": PATIENTS[5:6], "test": PATIENTS[6:], "cases": cases}


@pytest.fixture()
def folders(tmp_path, monkeypatch):
    raw, pre = tmp_path / "raw", tmp_path / "preprocessed"
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    return raw / DATASET, pre / DATASET


def _assert_patient_level(splits_file, split: dict) -> None:
    folds = json.loads(splits_file.read_text())
    assert len(folds) == 5
    assert sorted(folds[0]["train"]) == sorted(f"{p}_{f}" for p in split["train"] for f in ("ED", "ES"))
    for fold in folds:
        assert patients_on_both_sides(fold["train"], fold["val"]) == {}
        assert sorted(fold["train"] + fold["val"]) == sorted(c for c in split["cases"] if c[:10] not in split["test"])


def test_missing_splits_are_written_patient_level_from_the_raw_split(folders):
    raw, pre = folders
    assert ensure_patient_level_splits(DATASET, pre) is None  # no glrp_split.json anywhere: nnU-Net decides
    assert not pre.exists()
    raw.mkdir(parents=True)
    (raw / "glrp_split.json").write_text(json.dumps(_glrp_split()))
    out = ensure_patient_level_splits(DATASET, pre)
    assert out == pre / "splits_final.json"
    _assert_patient_level(out, _glrp_split())
    copy = json.loads((pre / "glrp_split.json").read_text())  # copied for the patient table, with the raw digest
    assert copy.pop("raw_split_sha256") == hashlib.sha256((raw / "glrp_split.json").read_bytes()).hexdigest()
    assert copy == _glrp_split()
    assert json.loads((pre / "glrp_folds.json").read_text())["seed"] == 0
    # an existing file is never rewritten (it is checked per fold instead)
    out.write_text(json.dumps([{"train": ["patient001_ED"], "val": ["patient001_ES"]}]))
    assert ensure_patient_level_splits(DATASET, pre) == out and "patient001_ES" in out.read_text()


def test_missing_splits_are_written_from_the_preprocessed_copy_with_its_seed(folders):
    _, pre = folders  # no raw dataset (e.g. only nnUNet_preprocessed was copied to this machine)
    pre.mkdir(parents=True)
    (pre / "glrp_split.json").write_text(json.dumps(_glrp_split()))
    (pre / "glrp_folds.json").write_text(json.dumps({"seed": 3}))
    out = ensure_patient_level_splits(DATASET, pre)
    _assert_patient_level(out, _glrp_split())
    from nnunetv2_glrp.dataset_split import nnunet_folds

    assert json.loads(out.read_text()) == nnunet_folds(_glrp_split(), seed=3)
    assert sorted(p.name for p in pre.iterdir()) == ["glrp_folds.json", "glrp_split.json", "splits_final.json"]


def test_other_ranks_wait_for_the_writer(folders):
    raw, pre = folders
    raw.mkdir(parents=True)
    (raw / "glrp_split.json").write_text(json.dumps(_glrp_split()))
    with pytest.raises(TimeoutError, match="splits_final.json was not written by rank 0"):
        ensure_patient_level_splits(DATASET, pre, writer=False, timeout_s=0.2)
    assert not (pre / "splits_final.json").exists()  # a non-writer never writes
    ensure_patient_level_splits(DATASET, pre)
    assert ensure_patient_level_splits(DATASET, pre, writer=False, timeout_s=0.2) == pre / "splits_final.json"
