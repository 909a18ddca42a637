"""The lean slice index (data/lean_index.py, data/case_table.py) against a slow reference read straight from the
files, and its on-disk cache: reused while the folder is unchanged, rebuilt when the pool changes or the cache
file is corrupt."""

from __future__ import annotations

import logging
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_glrp.data import (PositionStratifiedSampler, PretrainingSliceLoader, SliceIndex, SliceRecord,
                                VolumePartitionSampler, build_slice_index)
from nnunetv2_glrp.data import case_table as case_table_module
from nnunetv2_glrp.data.case_table import cache_path, case_table
from nnunetv2_glrp.data.lean_index import concatenate
from nnunetv2_glrp.dataset_split import read_split


def _reference_folder(folder: Path, kind: str, split: dict) -> list[SliceRecord]:
    """The index of one folder as the first implementation built it, read straight from the files: the sorted
    ``<case>.b2nd`` images (not ``_seg``), their ``.pkl`` crop boxes, one record per slice, test patients out."""
    import blosc2

    train_val = set(split["train"]) | set(split["val"])
    cases = sorted(n[:-5] for n in os.listdir(folder) if n.endswith(".b2nd") and not n.endswith("_seg.b2nd"))
    records = []
    for case in cases:
        info = split["cases"][case]
        if info["set"] not in ("train", "val") or info["patient"] not in train_val:
            continue
        with open(folder / f"{case}.pkl", "rb") as f:
            props = pickle.load(f)
        n_pre = blosc2.open(os.fspath(folder / f"{case}.b2nd"), mode="r").shape[1]
        start, m = int(props["bbox_used_for_cropping"][0][0]), int(props["shape_before_cropping"][0])
        records += [SliceRecord(str(folder), case, k, start + k + 1, m, info["patient"], kind) for k in range(n_pre)]
    return records


@pytest.fixture(scope="module")
def phantom_folders(phantom_preprocessed):
    from nnunetv2_glrp.models import load_plans_context
    from nnunetv2_glrp.preparation.unlabeled import unlabeled_folder

    ctx = load_plans_context(901, phantom_preprocessed)
    unlabeled = Path(unlabeled_folder(ctx.dataset_name, ctx.configuration, ctx.plans_identifier))
    return Path(ctx.data_folder), unlabeled, read_split(ctx.preprocessed_dataset_folder)


def test_lean_index_equals_the_reference_on_the_phantom(phantom_folders):
    labeled, unlabeled, split = phantom_folders
    index = build_slice_index(labeled, unlabeled, split)
    reference = _reference_folder(labeled, "labeled", split) + _reference_folder(unlabeled, "unlabeled", split)
    assert isinstance(index, SliceIndex)
    assert len({r.kind for r in reference}) == 2 and len(reference) > 100
    assert list(index) == reference  # same slices, same order, same positions, patients and kinds
    assert [index[i] for i in (-1, 0, len(index) // 2)] == [reference[-1], reference[0], reference[len(index) // 2]]
    np.testing.assert_array_equal(index.positions, [r.position for r in reference])
    # the samplers draw the same batches (and GCL the same partitions) from the index as from the record list
    for batch in (4, 12):
        a, b = PositionStratifiedSampler(index, batch), PositionStratifiedSampler(reference, batch)
        np.testing.assert_array_equal(a.patient_ids, b.patient_ids)
        rng_a, rng_b = np.random.default_rng(3), np.random.default_rng(3)
        assert [a.sample(rng_a) for _ in range(20)] == [b.sample(rng_b) for _ in range(20)]
    gcl_a, gcl_b = VolumePartitionSampler(index, 8, 4), VolumePartitionSampler(reference, 8, 4)
    assert gcl_a.volume_parts == gcl_b.volume_parts
    assert [gcl_a.partition(r) for r in index] == [gcl_b.partition(r) for r in reference]
    batch_a = PretrainingSliceLoader(index, 4, (32, 32), seed=1).generate_train_batch()
    batch_b = PretrainingSliceLoader(reference, 4, (32, 32), seed=1).generate_train_batch()
    assert batch_a["keys"] == batch_b["keys"]
    assert batch_a["positions"].tolist() == batch_b["positions"].tolist()


def test_slice_index_take_concatenate_and_add():
    a = SliceIndex.from_cases("/f1", ["c1", "c2"], ["p2", "p1"], ["labeled", "labeled"], [0, 2], [3, 6], [3, 2])
    b = SliceIndex.from_cases("/f2", ["c3"], ["p1"], ["unlabeled"], [1], [4], [2])
    assert list(a) == [SliceRecord("/f1", "c1", 0, 1, 3, "p2", "labeled"), SliceRecord("/f1", "c1", 1, 2, 3, "p2", "labeled"),
                       SliceRecord("/f1", "c1", 2, 3, 3, "p2", "labeled"), SliceRecord("/f1", "c2", 0, 3, 6, "p1", "labeled"),
                       SliceRecord("/f1", "c2", 1, 4, 6, "p1", "labeled")]
    both = a + b
    assert isinstance(both, SliceIndex) and list(both) == list(a) + list(b)
    assert list(concatenate([b, a, b])) == list(b) + list(a) + list(b)
    assert both.patient_codes().tolist() == [1, 1, 1, 0, 0, 0, 0]  # np.unique's inverse over the slices' patients
    assert list(both[1::3]) == list(both)[1::3] and list(both.take([6, 0])) == [list(both)[6], list(both)[0]]
    assert [1] + a == [1] + list(a)
    with pytest.raises(IndexError):
        both[7]


def _copy_case(src: Path, dst: Path, case: str, new: str) -> None:
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
        shutil.copy(src / f"{case}{suffix}", dst / f"{new}{suffix}")


def test_cache_reused_rebuilt_when_the_pool_changes_and_when_corrupt(phantom_folders, tmp_path, monkeypatch, caplog):
    labeled, _, split = phantom_folders
    folder = tmp_path / "pool"
    shutil.copytree(labeled, folder)
    calls = []
    real_build = case_table_module.build_case_table
    monkeypatch.setattr(case_table_module, "build_case_table", lambda f: calls.append(f) or real_build(f))

    first = case_table(folder)
    assert len(calls) == 1 and cache_path(folder).is_file() and cache_path(folder).parent == tmp_path
    assert sorted(os.listdir(folder)) == sorted(os.listdir(labeled))  # nothing written into the nnU-Net folder
    second = case_table(folder)
    assert len(calls) == 1, "unchanged folder: the cached table must be reused"
    assert second.names.tolist() == first.names.tolist() and second.n_slices.tolist() == first.n_slices.tolist()

    case = first.names[0]
    _copy_case(folder, folder, case, "zz_added_case")  # the pool grows: rebuilt, the new case in the table
    with caplog.at_level(logging.INFO, logger=case_table_module.__name__):
        grown = case_table(folder)
    assert len(calls) == 2 and grown.names.tolist() == first.names.tolist() + ["zz_added_case"]
    assert "stale" in caplog.text
    assert grown.n_slices[-1] == first.n_slices[0] and grown.starts[-1] == first.starts[0]

    for case_file in (folder / "zz_added_case.pkl", folder / "zz_added_case.b2nd", folder / "zz_added_case_seg.b2nd"):
        case_file.unlink()  # the pool shrinks back
    assert case_table(folder).names.tolist() == first.names.tolist() and len(calls) == 3

    path = cache_path(folder)
    data = path.read_bytes()
    for broken in (data[: len(data) // 2], data[:-40] + b"\0" * 40):  # half-written; corrupt tail
        path.write_bytes(broken)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger=case_table_module.__name__):
            rebuilt = case_table(folder)
        assert "corrupt or half-written" in caplog.text and str(path) in caplog.text
        assert rebuilt.names.tolist() == first.names.tolist()
        assert rebuilt.n_slices.tolist() == first.n_slices.tolist()
    assert len(calls) == 5
    case_table(folder)
    assert len(calls) == 5, "the rebuilt cache is valid again"


def test_cache_checksum_catches_a_tampered_table(phantom_folders, tmp_path, monkeypatch, caplog):
    labeled, _, _ = phantom_folders
    folder = tmp_path / "pool"
    shutil.copytree(labeled, folder)
    table = case_table(folder)
    path = cache_path(folder)
    with np.load(path) as z:
        fields = {k: z[k] for k in z.files}
    fields["starts"] = fields["starts"] + 1  # readable archive, wrong numbers
    with open(path, "wb") as f:
        np.savez(f, **fields)
    with caplog.at_level(logging.WARNING, logger=case_table_module.__name__):
        again = case_table(folder)
    assert "checksum mismatch" in caplog.text
    assert again.starts.tolist() == table.starts.tolist()


def _literal_sample(sampler: PositionStratifiedSampler, rng: np.random.Generator) -> list[int]:
    """The sampler's draw as first written: scan the bin for slices of unused patients (np.isin)."""
    used, picks = set(), []
    for b in rng.permutation(sampler.batch_size):
        candidates = sampler.by_bin[b] if len(sampler.by_bin[b]) else np.arange(sampler.n)
        fresh = candidates[~np.isin(sampler.patient_ids[candidates], list(used))]
        pool = fresh if len(fresh) else candidates
        i = int(pool[rng.integers(len(pool))])
        picks.append(i)
        used.add(int(sampler.patient_ids[i]))
    return picks


@pytest.mark.parametrize("n_patients,batch", [(3, 4), (5, 12), (40, 8), (200, 12)])
def test_fast_draw_equals_the_literal_isin_draw(n_patients, batch):
    """Same picks from the same generator: few patients (fresh ones run out), empty bins (short stacks), many."""
    rng = np.random.default_rng(n_patients)
    names, patients, starts, ms, sizes = [], [], [], [], []
    for p in range(n_patients):
        for frame in range(int(rng.integers(1, 4))):
            m = int(rng.integers(2, 14))
            z = int(rng.integers(1, m + 1))
            names.append(f"p{p:03d}_f{frame}")
            patients.append(f"p{p:03d}")
            starts.append(int(rng.integers(0, m - z + 1)))
            ms.append(m)
            sizes.append(z)
    index = SliceIndex.from_cases("/f", names, patients, ["labeled"] * len(names), starts, ms, sizes)
    sampler = PositionStratifiedSampler(index, batch)
    rng_fast, rng_literal = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(100):
        assert sampler.sample(rng_fast) == _literal_sample(sampler, rng_literal)


def test_fast_draw_with_an_empty_bin():
    # two patients, all slices at positions in the top half: the lower bins of a batch of 8 are empty
    index = SliceIndex.from_cases("/f", ["a", "b"], ["pa", "pb"], ["labeled"] * 2, [5, 6], [10, 10], [5, 4])
    sampler = PositionStratifiedSampler(index, 8)
    assert sum(len(b) == 0 for b in sampler.by_bin) >= 3
    rng_fast, rng_literal = np.random.default_rng(1), np.random.default_rng(1)
    for _ in range(50):
        assert sampler.sample(rng_fast) == _literal_sample(sampler, rng_literal)


def test_a_case_with_unusable_properties_fails_only_when_indexed(tmp_path):
    """The case table keeps a broken case as -1 (cached); the index raises its error, naming it, only when a
    train/val patient needs it: a test patient's broken case never stops the index."""
    import warnings

    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    folder = tmp_path / "plans_2d"
    folder.mkdir()
    for case, bbox in (("a_ok", [[1, 4], [0, 8], [0, 8]]), ("b_broken", None), ("t_broken", None)):
        props = {"shape_before_cropping": (5, 8, 8)}
        if bbox:
            props["bbox_used_for_cropping"] = bbox
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nnUNetDatasetBlosc2.save_case(np.ones((1, 3, 8, 8), np.float32), np.zeros((1, 3, 8, 8), np.int8), props,
                                          str(folder / case), chunks=(1, 1, 8, 8), blocks=(1, 1, 8, 8))
    split = {"train": ["pa", "pb"], "val": [], "test": ["pt"],
             "cases": {"a_ok": {"patient": "pa", "set": "train"}, "b_broken": {"patient": "pb", "set": "train"},
                       "t_broken": {"patient": "pt", "set": "test"}}}
    table = case_table(folder)
    assert table.n_slices.tolist() == [3, -1, -1] and table.starts[0] == 1 and table.ms[0] == 5
    with pytest.raises(ValueError, match="case b_broken: properties lack bbox_used_for_cropping"):
        build_slice_index(folder, None, split)
    split["cases"]["b_broken"]["set"], split["train"] = "test", ["pa"]
    split["test"].append("pb")
    index = build_slice_index(folder, None, split)
    assert [(r.case, r.n, r.m) for r in index] == [("a_ok", 2, 5), ("a_ok", 3, 5), ("a_ok", 4, 5)]


def test_slice_index_compares_like_a_list_of_records():
    a = SliceIndex.from_cases("/f1", ["c1", "c2"], ["p2", "p1"], ["labeled", "labeled"], [0, 2], [3, 6], [3, 2])
    assert a == list(a) and list(a) == a and a[:3] == list(a)[:3] and a[1:] != list(a)[:-1]
    assert a != list(a)[:-1] and a != SliceIndex.from_cases("/f1", ["c1"], ["p2"], ["labeled"], [0], [3], [3])
    assert a[:3] == SliceIndex.from_cases("/f1", ["c1"], ["p2"], ["labeled"], [0], [3], [3])
