"""k-patient draws: nested across k, independent of the method, seeded, loud when k is too large."""

from __future__ import annotations

import json

import pytest

from nnunetv2_glrp.finetuning.patient_draw import (
    PAPER_K_VALUES, count_patients, draw_patients, patient_of_case, select_cases, write_selection,
)

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
