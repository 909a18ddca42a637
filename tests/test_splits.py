"""Patient-level splits: GLRP train/val/test and nnU-Net's splits_final.json."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest

from nnunetv2_glrp.cli import main
from nnunetv2_glrp.conversion.splits import parse_ratio, split_patients
from nnunetv2_glrp.dataset_split import nnunet_folds, write_splits_final

PATIENTS = [f"patient{i:03d}" for i in range(1, 151)]


def _check_partition(sets: dict, patients: list[str]) -> None:
    all_ids = sets["train"] + sets["val"] + sets["test"]
    assert sorted(all_ids) == sorted(patients) and len(set(all_ids)) == len(all_ids)


def test_acdc_sized_split_is_105_15_30_and_seeded():
    a = split_patients(PATIENTS, "7:1:2", seed=0)
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (105, 15, 30)
    _check_partition(a, PATIENTS)
    assert a == split_patients(list(reversed(PATIENTS)), "7:1:2", seed=0)  # input order does not matter
    assert a != split_patients(PATIENTS, "7:1:2", seed=1)


@pytest.mark.parametrize("n,expected", [(3, (1, 1, 1)), (4, (2, 1, 1)), (10, (7, 1, 2)), (20, (14, 2, 4))])
def test_small_splits_keep_every_set_nonempty(n, expected):
    sets = split_patients(PATIENTS[:n], "7:1:2", seed=3)
    assert (len(sets["train"]), len(sets["val"]), len(sets["test"])) == expected
    _check_partition(sets, PATIENTS[:n])


def test_official_split():
    test = PATIENTS[100:]
    sets = split_patients(PATIENTS, "official", seed=0, official_test=test)
    assert sets["test"] == test and len(sets["val"]) == 13 and len(sets["train"]) == 87  # 100 / 8 = 12.5 -> 13
    _check_partition(sets, PATIENTS)


@pytest.mark.parametrize("bad", ["7:1", "a:b:c", "0:1:1", "7:-1:2", "0:0:0", "nan:1:1", "inf:1:1", "7:nan:2"])
def test_bad_ratio(bad):
    with pytest.raises(ValueError, match="train:val:test"):
        parse_ratio(bad)


def test_official_split_with_one_training_patient_is_refused():
    with pytest.raises(ValueError, match="'official' over 3 patients gives 1 train / 0 val / 2 test"):
        split_patients(PATIENTS[:3], "official", seed=0, official_test=PATIENTS[1:3])


def _record(train, val, test) -> dict:
    cases = {f"{p}_{ph}": {"patient": p, "set": s, "phase": ph, "frame": 1, "source": "x", "kind": "labeled"}
             for s, ps in (("train", train), ("val", val), ("test", test)) for p in ps for ph in ("ED", "ES")}
    cases.update({f"{p}_t01": {"patient": p, "set": "train", "phase": None, "frame": 1, "source": "x",
                               "kind": "unlabeled"} for p in train})
    return {"train": train, "val": val, "test": test, "cases": cases}


def test_nnunet_folds_are_patient_level_and_fold0_is_glrp():
    sets = split_patients(PATIENTS[:40], "7:1:2", seed=0)
    record = _record(**sets)
    folds = nnunet_folds(record, seed=0)
    assert len(folds) == 5
    assert folds[0]["train"] == sorted(f"{p}_{ph}" for p in sets["train"] for ph in ("ED", "ES"))
    assert folds[0]["val"] == sorted(f"{p}_{ph}" for p in sets["val"] for ph in ("ED", "ES"))
    pool = set(sets["train"] + sets["val"])
    cv_val = []
    for fold in folds:
        train_p = {c.rsplit("_", 1)[0] for c in fold["train"]}
        val_p = {c.rsplit("_", 1)[0] for c in fold["val"]}
        assert not train_p & val_p and train_p | val_p == pool
        assert all(c.endswith(("_ED", "_ES")) for c in fold["train"] + fold["val"])  # no unlabeled, no test
        assert len(fold["train"]) == 2 * len(train_p) and len(fold["val"]) == 2 * len(val_p)
    for fold in folds[1:]:
        cv_val.extend(c.rsplit("_", 1)[0] for c in fold["val"][::2])
    assert len(cv_val) == len(set(cv_val))  # CV validation sets are disjoint
    assert nnunet_folds(record, seed=0) == folds and nnunet_folds(record, seed=1) != folds


def test_few_patients_drop_empty_folds():
    folds = nnunet_folds(_record(["patient001", "patient002"], ["patient003"], []), seed=0)
    assert len(folds) == 3 and all(f["val"] for f in folds)


def test_write_splits_final_for_session_dataset(phantom_raw_dataset):
    out = write_splits_final(901)
    expected_dir = Path(os.environ["nnUNet_preprocessed"]) / phantom_raw_dataset.name
    assert out == expected_dir / "splits_final.json"
    record = json.loads((phantom_raw_dataset / "glrp_split.json").read_text())
    assert json.loads(out.read_text()) == nnunet_folds(record, seed=0)
    copy = json.loads((expected_dir / "glrp_split.json").read_text())
    raw_bytes = (phantom_raw_dataset / "glrp_split.json").read_bytes()
    assert copy.pop("raw_split_sha256") == hashlib.sha256(raw_bytes).hexdigest()
    assert copy == record
    assert not [p for p in expected_dir.iterdir() if p.name.endswith(".tmp")]


def test_write_splits_errors(phantom_raw_dataset, capsys):
    fake = phantom_raw_dataset.parent / "Dataset977_NoSplit"
    fake.mkdir()
    try:
        with pytest.raises(FileNotFoundError, match="Dataset977_NoSplit: .*glrp_split.json not found"):
            write_splits_final("Dataset977_NoSplit")
        (fake / "glrp_split.json").write_text("{not json")
        assert main(["write-splits", "-d", "977"]) == 2
        assert "is not valid JSON" in capsys.readouterr().err
    finally:
        shutil.rmtree(fake)
    assert main(["write-splits", "-d", "901", "--seed", "0"]) == 0


def test_a_preprocessed_split_older_than_the_raw_split_is_refused(tmp_path, monkeypatch, capsys):
    """convert -> write-splits -> convert --overwrite with another split: every reader of the preprocessed
    copy stops and says to rerun prepare, until the copy is rewritten."""
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom
    from nnunetv2_glrp.dataset_split import read_cases_table, read_split

    make_phantom(tmp_path / "acdc", n_patients=4, seed=1, n_frames=3)
    monkeypatch.setenv("nnUNet_raw", os.fspath(tmp_path / "raw"))
    monkeypatch.setenv("nnUNet_preprocessed", os.fspath(tmp_path / "pre"))
    first = tmp_path / "first.json"
    first.write_text(json.dumps({"train": ["patient001", "patient002"], "val": ["patient003"],
                                 "test": ["patient004"]}), encoding="utf-8")
    raw = convert_acdc(tmp_path / "acdc", 978, split_file=first)
    write_splits_final(raw.name)
    pre = tmp_path / "pre" / raw.name
    assert read_split(pre)["train"] == ["patient001", "patient002"]
    moved = tmp_path / "moved.json"  # patient001 moves to the test set
    moved.write_text(json.dumps({"train": ["patient002", "patient004"], "val": ["patient003"],
                                 "test": ["patient001"]}), encoding="utf-8")
    convert_acdc(tmp_path / "acdc", 978, split_file=moved, overwrite=True)
    message = (r"the raw split of Dataset978_ACDC changed after prepare .*; "
               r"rerun `nnUNetv2_glrp prepare -d 978 ...`")
    with pytest.raises(ValueError, match=message):
        read_split(pre)
    with pytest.raises(ValueError, match=message):
        read_cases_table(pre)
    assert read_split(raw)["test"] == ["patient001"]  # the raw file itself is the truth: no check
    assert main(["write-splits", "-d", "978"]) == 0
    capsys.readouterr()
    assert read_split(pre)["test"] == ["patient001"]
