"""Slice-position data: position labels, unlabeled frames, never a test-set case, two-view batches.

A tiny fake preprocessed dataset (written with nnU-Net's own ``nnUNetDatasetBlosc2.save_case``) encodes
each slice's true 1-based position n in its pixel values, with crop offsets, so the label can be checked
exactly; one test then checks the real pipeline on the phantom against the raw NIfTI slices.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from nnunetv2_glrp.data import (PositionStratifiedSampler, PretrainingSliceLoader, build_slice_index,
                                check_slice_axis, data_digest, make_augmenter,
                                pretraining_data_manifest, slice_positions)
from nnunetv2_glrp.dataset_split import read_split
from nnunetv2_glrp.data import reading
from nnunetv2_glrp.data.reading import read_slice

# patient -> (set, number of original slices m, crop start, number of kept slices)
PATIENTS = {"p1": ("train", 8, 1, 6), "p2": ("train", 10, 0, 10), "p3": ("train", 6, 2, 3),
            "p4": ("val", 9, 0, 8), "p5": ("test", 7, 0, 7), "p6": ("test", 12, 3, 5)}
HW = 40


def _save(folder: Path, case: str, m: int, start: int, kept: int, frame: int) -> None:
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    n = np.arange(start + 1, start + kept + 1, dtype=np.float32)  # true 1-based positions
    data = np.broadcast_to((n * 10 + frame)[None, :, None, None], (1, kept, HW, HW)).copy()
    data[:, :, :4, :4] = 0
    seg = np.full((1, kept, HW, HW), 7, dtype=np.int8)  # marker: labels must never be read
    props = {"bbox_used_for_cropping": [[start, start + kept], [0, HW], [0, HW]],
             "shape_before_cropping": (m, HW, HW), "spacing": [5.0, 1.5, 1.5]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nnUNetDatasetBlosc2.save_case(data, seg, props, str(folder / case), chunks=(1, 1, HW, HW),
                                      blocks=(1, 1, HW, HW))


@pytest.fixture(scope="module")
def fake_dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("fake_pre")
    labeled, unlabeled = root / "plans_2d", root / "plans_2d_unlabeled"
    labeled.mkdir()
    unlabeled.mkdir()
    cases = {}
    for p, (s, m, start, kept) in PATIENTS.items():
        for frame in (1, 5):
            _save(labeled, f"{p}_frame{frame:02d}", m, start, kept, frame)
            cases[f"{p}_frame{frame:02d}"] = {"patient": p, "set": s, "kind": "labeled"}
        for frame in (2, 3, 4):
            _save(unlabeled, f"{p}_unlab{frame:02d}", m, start, kept, frame)
            cases[f"{p}_unlab{frame:02d}"] = {"patient": p, "set": s, "kind": "unlabeled"}
    split = {s: [p for p, v in PATIENTS.items() if v[0] == s] for s in ("train", "val", "test")}
    split["cases"] = cases
    (root / "glrp_split.json").write_text(json.dumps(split))
    return root, labeled, unlabeled


def test_positions_from_crop_box():
    props = {"bbox_used_for_cropping": [[2, 5], [0, 4], [0, 4]], "shape_before_cropping": (9, 4, 4)}
    assert slice_positions(props, 3, "c") == [(3, 9), (4, 9), (5, 9)]
    with pytest.raises(ValueError, match="case c: 4 preprocessed slices"):
        slice_positions(props, 4, "c")
    with pytest.raises(ValueError, match="case c: properties lack"):
        slice_positions({}, 3, "c")


def test_slice_axis_check():
    check_slice_axis([0, 1, 2], "2d", (32, 32))
    with pytest.raises(ValueError, match="not short-axis slices"):
        check_slice_axis([1, 0, 2], "2d", (32, 32))
    with pytest.raises(ValueError, match="needs a 2D configuration"):
        check_slice_axis([0, 1, 2], "3d_fullres", (8, 32, 32))


def test_index_positions_unlabeled_and_no_test(fake_dataset):
    root, labeled, unlabeled = fake_dataset
    split = read_split(root)
    records = build_slice_index(labeled, unlabeled, split)
    patients = {r.patient for r in records}
    assert patients == {"p1", "p2", "p3", "p4"}
    assert {r.kind for r in records} == {"labeled", "unlabeled"}
    expected = sum(2 * kept + 3 * kept for s, m, st, kept in (PATIENTS[p] for p in patients))
    assert len(records) == expected
    for r in records:  # the slice's pixel value encodes its true n: the label must agree
        value = float(read_slice(r.folder, r.case, r.slice_index)[0, 20, 20])
        assert int(round(value)) // 10 == r.n, (r, value)
        assert r.m == PATIENTS[r.patient][1]
        assert 0 < r.position <= 1


def test_unlisted_case_is_an_error(fake_dataset, tmp_path):
    root, labeled, _ = fake_dataset
    split = read_split(root)
    del split["cases"]["p1_frame01"]
    with pytest.raises(ValueError, match="p1_frame01 .* not listed in glrp_split.json"):
        build_slice_index(labeled, None, split)


def test_missing_unlabeled_folder_or_cases_is_an_error(fake_dataset, tmp_path):
    root, labeled, unlabeled = fake_dataset
    split = read_split(root)
    with pytest.raises(FileNotFoundError, match=r"missing_unlabeled not found.*lists 12 unlabeled frames.*FIX IT"):
        build_slice_index(labeled, root / "missing_unlabeled", split, fix="FIX IT")
    with pytest.raises(FileNotFoundError, match=r"folder None not found"):
        build_slice_index(labeled, None, split)
    partial = dict(split, cases=dict(split["cases"], p2_unlab09={"patient": "p2", "set": "train", "kind": "unlabeled"}))
    with pytest.raises(FileNotFoundError, match=r"plans_2d_unlabeled: 1 unlabeled case.*\(p2_unlab09\); FIX IT"):
        build_slice_index(labeled, unlabeled, partial, fix="FIX IT")
    missing_labeled = dict(split, cases=dict(split["cases"], p4_frame09={"patient": "p4", "set": "val", "kind": "labeled"}))
    with pytest.raises(FileNotFoundError, match=r"plans_2d: 1 labeled case.*p4_frame09"):
        build_slice_index(labeled, unlabeled, missing_labeled)
    # a test patient's unlabeled frames are never required
    extra_test = dict(split, cases=dict(split["cases"], p5_unlab09={"patient": "p5", "set": "test", "kind": "unlabeled"}))
    assert len(build_slice_index(labeled, unlabeled, extra_test)) == len(build_slice_index(labeled, unlabeled, split))
    with pytest.raises(ValueError, match="p1_unlab02 in the labeled folder .*plans_2d_unlabeled is listed as 'unlabeled'"):
        build_slice_index(unlabeled, labeled, split)  # folders swapped


def test_dataset_without_unlabeled_frames_indexes_the_labeled_cases(fake_dataset):
    root, labeled, _ = fake_dataset
    split = read_split(root)
    split["cases"] = {c: v for c, v in split["cases"].items() if v["kind"] == "labeled"}
    for unlabeled in (None, root / "does_not_exist"):
        records = build_slice_index(labeled, unlabeled, split)
        assert {r.kind for r in records} == {"labeled"}
        assert len(records) == sum(2 * PATIENTS[p][3] for p in ("p1", "p2", "p3", "p4"))


def test_data_digest_follows_the_pretraining_patients(fake_dataset):
    root, _, _ = fake_dataset
    split = read_split(root)
    manifest = pretraining_data_manifest(split)
    assert manifest["patients"] == ["p1", "p2", "p3", "p4"]
    assert len(manifest["cases"]) == 4 * 5 and all(c[1] in manifest["patients"] for c in manifest["cases"])
    assert data_digest(pretraining_data_manifest(json.loads(json.dumps(split)))) == data_digest(manifest)
    resplit = json.loads(json.dumps(split))  # p1 becomes a test patient, p5 a training patient
    resplit["train"] = ["p2", "p3", "p5"]
    resplit["test"] = ["p1", "p6"]
    for case, info in resplit["cases"].items():
        info["set"] = {"p1": "test", "p5": "train"}.get(info["patient"], info["set"])
    assert data_digest(pretraining_data_manifest(resplit)) != data_digest(manifest)
    fewer_frames = json.loads(json.dumps(split))
    del fewer_frames["cases"]["p2_unlab03"]
    assert data_digest(pretraining_data_manifest(fewer_frames)) != data_digest(manifest)


def test_open_case_cache_is_capped(fake_dataset, monkeypatch):
    """At most MAX_OPEN_CASES blosc2 arrays (one descriptor each) stay open, however many cases are read."""
    import os

    _, labeled, unlabeled = fake_dataset

    def open_b2nd() -> int:
        fds = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                fds.append(os.readlink(f"/proc/self/fd/{fd}"))
            except OSError:
                continue
        return sum(f.endswith(".b2nd") and str(root_dir) in f for f in fds)

    root_dir = labeled.parent
    assert reading.MAX_OPEN_CASES == 256
    reading._open_cases.clear()  # closes every cached image array
    monkeypatch.setattr(reading, "MAX_OPEN_CASES", 3)
    for folder in (labeled, unlabeled):
        for case in reading.list_identifiers(folder):
            read_slice(str(folder), case, 0)
    assert 0 < open_b2nd() <= 3
    reading._open_cases.clear()
    assert open_b2nd() == 0


def test_sampler_mixes_positions_and_patients(fake_dataset):
    root, labeled, unlabeled = fake_dataset
    records = build_slice_index(labeled, unlabeled, read_split(root))
    sampler = PositionStratifiedSampler(records, 4)
    rng = np.random.default_rng(0)
    distinct = []
    for _ in range(20):
        picks = [records[i] for i in sampler.sample(rng)]
        distinct.append(len({r.patient for r in picks}))
        assert sorted(min(int(r.position * 4), 3) for r in picks) == [0, 1, 2, 3]  # one per position bin
    # greedy: a patient repeats only when its bin holds no unused patient (p3 covers positions 0.5-0.83 only)
    assert min(distinct) >= 3 and np.mean(distinct) > 3.5
    a = sampler.sample(np.random.default_rng(1))
    assert a == sampler.sample(np.random.default_rng(1))


def test_loader_batches_two_views_seeded(fake_dataset):
    root, labeled, unlabeled = fake_dataset
    records = build_slice_index(labeled, unlabeled, read_split(root))

    def fake_psm(views):
        return torch.full((views.shape[0] * 9, views.shape[0] * 9), 0.5)

    loader = PretrainingSliceLoader(records, 4, (32, 32), seed=3, psm_fn=fake_psm)
    torch.manual_seed(0)
    np.random.seed(0)  # batchgeneratorsv2 draws from torch's and numpy's global RNGs
    batch = next(make_augmenter(loader, 0, [0]))
    assert batch["data"].shape == (8, 1, 32, 32) and batch["data"].dtype == torch.float32
    assert batch["psm"].shape == (72, 72)
    assert torch.equal(batch["positions"][:4], batch["positions"][4:])
    seen = set()
    for i, (case, k) in enumerate(batch["keys"]):
        rec = next(r for r in records if r.case == case and r.slice_index == k)
        assert batch["positions"][i].item() == pytest.approx(rec.n / rec.m)
        seen.add(rec.patient)
    assert "p5" not in seen and "p6" not in seen
    loader2 = PretrainingSliceLoader(records, 4, (32, 32), seed=3, psm_fn=fake_psm)
    torch.manual_seed(0)
    np.random.seed(0)  # batchgeneratorsv2 draws from torch's and numpy's global RNGs
    batch2 = next(make_augmenter(loader2, 0, [0]))
    assert batch2["keys"] == batch["keys"] and torch.equal(batch2["data"], batch["data"])


def test_phantom_positions_match_raw_slices(phantom_preprocessed):
    """Each preprocessed slice of a phantom case (labeled ED/ES and unlabeled cine frames) correlates best
    with raw slice n - 1 of its NIfTI."""
    import os

    import SimpleITK as sitk
    from skimage.transform import resize

    from nnunetv2_glrp.data.reading import read_properties
    from nnunetv2_glrp.models import load_plans_context
    from nnunetv2_glrp.pretraining.inputs import pretraining_records

    ctx = load_plans_context(901, phantom_preprocessed)
    split = read_split(ctx.preprocessed_dataset_folder)
    records, manifest = pretraining_records(ctx)
    assert {r.kind for r in records} == {"labeled", "unlabeled"}
    assert {r.case for r in records} == {c[0] for c in manifest["cases"]}  # the manifest is the data used
    raw = Path(os.environ["nnUNet_raw"]) / ctx.dataset_name
    checked = {"labeled": 0, "unlabeled": 0}
    for kind, subfolder in (("labeled", "imagesTr"), ("unlabeled", "unlabeledTr")):
        for case in sorted({r.case for r in records if r.kind == kind})[:3]:
            img = sitk.GetArrayFromImage(sitk.ReadImage(str(raw / subfolder / f"{case}_0000.nii.gz")))
            img = img.astype(np.float32)
            case_records = [r for r in records if r.case == case]
            bbox = read_properties(Path(case_records[0].folder), case)["bbox_used_for_cropping"]
            for r in case_records:
                pre = read_slice(r.folder, r.case, r.slice_index)[0]
                scores = []
                for z in range(img.shape[0]):
                    crop = img[z, bbox[1][0]:bbox[1][1], bbox[2][0]:bbox[2][1]]
                    scores.append(np.corrcoef(resize(crop, pre.shape, order=1).ravel(), pre.ravel())[0, 1])
                assert int(np.argmax(scores)) == r.n - 1, (case, r.slice_index, scores)
                assert r.m == img.shape[0]
                checked[kind] += 1
    assert checked["labeled"] > 0 and checked["unlabeled"] > 0, checked
    assert not {r.patient for r in records} & set(split["test"])


def test_one_loader_for_a_run_reseeds_its_sampler_per_epoch(fake_dataset):
    """With iterations_per_epoch the loader draws epoch e's slices from (seed, e) alone: a loader started at
    epoch 1 (a resumed run) draws what one loader serving epochs 0 and 1 draws in its second epoch."""
    root, labeled, unlabeled = fake_dataset
    records = build_slice_index(labeled, unlabeled, read_split(root))

    def keys(loader, n):
        return [loader.generate_train_batch()["keys"] for _ in range(n)]

    whole = keys(PretrainingSliceLoader(records, 3, (32, 32), seed=5, iterations_per_epoch=4), 8)
    resumed = keys(PretrainingSliceLoader(records, 3, (32, 32), seed=5, iterations_per_epoch=4, first_epoch=1), 4)
    assert whole[4:] == resumed
    assert whole[:4] != whole[4:]  # epochs differ
    other = keys(PretrainingSliceLoader(records, 3, (32, 32), seed=6, iterations_per_epoch=4, first_epoch=1), 4)
    assert other != resumed


def test_volume_partitions_cut_the_original_stack():
    from nnunetv2_glrp.data import volume_partition

    assert [volume_partition(n, 10, 4) for n in range(1, 11)] == [0, 0, 0, 1, 1, 2, 2, 2, 3, 3]
    assert [volume_partition(n, 4, 4) for n in range(1, 5)] == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="slice 0 outside a stack of 4"):
        volume_partition(0, 4, 4)


def test_gcl_sampler_draws_volumes_times_partitions(fake_dataset):
    """Batches of V distinct volumes (distinct patients while there are enough) x one slice per partition;
    p3 (slices 3-5 of 6: partitions 1 and 2 only) is never drawn; seeded; bad batch sizes are refused."""
    from nnunetv2_glrp.data import VolumePartitionSampler

    root, labeled, unlabeled = fake_dataset
    records = build_slice_index(labeled, unlabeled, read_split(root))
    sampler = VolumePartitionSampler(records, 8, 4)
    rng = np.random.default_rng(0)
    cases = set()
    for _ in range(30):
        picks = [records[i] for i in sampler.sample(rng)]
        volumes = [picks[:4], picks[4:]]
        for volume in volumes:
            assert len({(r.folder, r.case) for r in volume}) == 1
            assert [sampler.partition(r) for r in volume] == [0, 1, 2, 3]
        assert volumes[0][0].patient != volumes[1][0].patient and "p3" not in {r.patient for r in picks}
        cases |= {r.case for r in picks}
    assert len(cases) > 8  # volumes vary from batch to batch
    assert sampler.sample(np.random.default_rng(4)) == sampler.sample(np.random.default_rng(4))
    wide = VolumePartitionSampler(records, 16, 4)  # 4 volumes from 3 eligible patients: one repeats, volumes do not
    picks = [records[i] for i in wide.sample(np.random.default_rng(1))]
    assert len({r.case for r in picks}) == 4 and len({r.patient for r in picks}) == 3
    with pytest.raises(ValueError, match="batch size 6 must be a positive multiple of the number of partitions 4"):
        VolumePartitionSampler(records, 6, 4)
    p3 = [r for r in records if r.patient == "p3"]
    with pytest.raises(ValueError, match="only 0 of the 5 volumes have them"):
        VolumePartitionSampler(p3, 4, 4)


def test_loader_adds_the_partitions_of_a_gcl_sampler(fake_dataset):
    from nnunetv2_glrp.data import VolumePartitionSampler, volume_partition

    root, labeled, unlabeled = fake_dataset
    records = build_slice_index(labeled, unlabeled, read_split(root))
    loader = PretrainingSliceLoader(records, 8, (32, 32), seed=0, sampler=VolumePartitionSampler(records, 8, 4))
    batch = loader.generate_train_batch()
    expected = [volume_partition(int(round(float(read_slice(labeled if "frame" in c else unlabeled, c, k)[0, 20, 20])))
                                 // 10, PATIENTS[c.split("_")[0]][1], 4) for c, k in batch["keys"]]
    assert batch["partitions"].tolist() == expected * 2 == [0, 1, 2, 3] * 4
    assert "partitions" not in PretrainingSliceLoader(records, 4, (32, 32), seed=0).generate_train_batch()
