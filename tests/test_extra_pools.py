"""Pretraining on extra unlabeled pools (other converted datasets): their train/val frames join the target's,
preprocessed with the target's plans; no test patient of any pool ever enters; the cache key follows the pools."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from nnunetv2_glrp.data import data_digest
from nnunetv2_glrp.dataset_split import read_split
from nnunetv2_glrp.preparation.extra_pools import pool_folder, pool_names, pool_split
from nnunetv2_glrp.pretraining import api as pretraining_api
from nnunetv2_glrp.pretraining import check_named_encoder, ensure_pretrained
from nnunetv2_glrp.pretraining.inputs import pretraining_records

POOL_ID, RESPLIT_POOL_ID = 958, 959


@pytest.fixture(scope="module")
def pools(phantom_preprocessed, tmp_path_factory, session_root):
    """Two pools converted from one 5-patient phantom with two different splits (raw only: no planning)."""
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom

    root = tmp_path_factory.mktemp("pool_phantom")
    make_phantom(root, n_patients=5, seed=7, n_frames=3, first_patient=1)
    a = convert_acdc(root, POOL_ID, split="3:1:1", seed=0, dataset_name="Pool")
    b = convert_acdc(root, RESPLIT_POOL_ID, split="3:1:1", seed=1, dataset_name="PoolResplit")
    return a.name, b.name


@pytest.fixture(scope="module")
def ctx(phantom_preprocessed):
    from nnunetv2_glrp.models import load_plans_context

    torch.set_num_threads(1)
    return load_plans_context(901, phantom_preprocessed)


def test_pool_frames_of_train_and_val_patients_only(ctx, pools, session_root):
    pool = pools[0]
    raw_split = read_split(session_root / "nnUNet_raw" / pool)
    assert raw_split["test"], "the pool must have a test patient for this test to mean anything"
    records, manifest = pretraining_records(ctx, extra_pools=(POOL_ID,))
    target_records, target_manifest = pretraining_records(ctx)
    pool_records = records[len(target_records):]
    assert records[: len(target_records)] == target_records
    # exactly the pool's train/val patients, named per pool; none of its test patients
    allowed = {f"{pool}/{p}" for p in raw_split["train"] + raw_split["val"]}
    assert {r.patient for r in pool_records} == allowed
    assert not {r.patient.split("/")[1] for r in pool_records} & set(raw_split["test"])
    # every image of those patients (ED/ES without their labels + cine frames), and nothing of a test patient
    # was even preprocessed
    wanted = {c for c, info in raw_split["cases"].items() if info["set"] in ("train", "val")}
    folder = pool_folder(ctx.dataset_name, ctx.configuration, "nnUNetPlans", pool)
    assert {p.name[:-4] for p in folder.glob("*.pkl")} == wanted == {r.case for r in pool_records}
    assert any(raw_split["cases"][c]["kind"] == "labeled" for c in wanted)
    assert manifest["extra_pools"][0]["dataset"] == pool
    assert manifest["extra_pools"][0]["patients"] == sorted(allowed)
    assert {k: v for k, v in manifest.items() if k != "extra_pools"} == target_manifest
    # a pool image preprocessed = nnU-Net's preprocessor run on it with the target's plans (target spacing)
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    case = sorted(c for c in wanted if raw_split["cases"][c]["kind"] == "labeled")[0]
    raw_image = session_root / "nnUNet_raw" / pool / "imagesTr" / f"{case}_0000.nii.gz"
    dataset_json = json.loads((ctx.preprocessed_dataset_folder / "dataset.json").read_text())
    expected, _, _ = ctx.configuration_manager.preprocessor_class(verbose=False).run_case(
        [str(raw_image)], None, ctx.plans_manager, ctx.configuration_manager, dataset_json)
    data, seg, _, props = nnUNetDatasetBlosc2(str(folder)).load_case(case)
    np.testing.assert_array_equal(data[:], expected)
    assert "class_locations" not in props and set(np.unique(seg[:])) <= {-1, 0}  # its label was never read


def test_a_test_patients_case_in_a_pool_folder_is_refused(ctx, pools, session_root, tmp_path):
    from nnunetv2_glrp.data.slice_index import index_unlabeled_folder

    pool = pools[0]
    pretraining_records(ctx, extra_pools=(POOL_ID,))
    folder = shutil.copytree(pool_folder(ctx.dataset_name, ctx.configuration, "nnUNetPlans", pool), tmp_path / "pool")
    assert index_unlabeled_folder(folder, pool_split(pool))  # the copy indexes as it is
    test_patient = read_split(session_root / "nnUNet_raw" / pool)["test"][0]
    donor = sorted(folder.glob("*.pkl"))[0].name[:-4]
    for suffix in (".b2nd", "_seg.b2nd", ".pkl"):
        shutil.copy(folder / f"{donor}{suffix}", folder.parent / f"{test_patient}_ED{suffix}")
        shutil.move(folder.parent / f"{test_patient}_ED{suffix}", folder / f"{test_patient}_ED{suffix}")
    planted = shutil.copytree(folder, tmp_path / "planted")  # a new path: the reader caches folders
    with pytest.raises(ValueError, match=f"case {test_patient}_ED in .* is not listed"):
        index_unlabeled_folder(planted, pool_split(pool))


def test_the_cache_key_follows_the_pools(ctx, pools):
    plain = pretraining_api.data_manifest(ctx.dataset_name)
    # without pools the manifest (and so every existing cache entry) is what it was before pools existed
    assert plain == pretraining_api.pretraining_data_manifest(read_split(ctx.preprocessed_dataset_folder))
    digests = {data_digest(pretraining_api.data_manifest(ctx.dataset_name, p))
               for p in ((), (pools[0],), (pools[1],), pools)}
    assert len(digests) == 4  # each pool, and a pool's split, changes the key
    assert pool_names([RESPLIT_POOL_ID, POOL_ID, pools[0]], ctx.dataset_name) == tuple(sorted(pools))
    with pytest.raises(ValueError, match="target dataset itself"):
        pool_names([901], ctx.dataset_name)


def test_pretraining_with_a_pool_is_its_own_cache_entry_and_a_usable_named_encoder(ctx, pools):
    kwargs = dict(method="GRP", preset="cpu", seed=0, epochs=1, iterations_per_epoch=2, batch_size=4)
    pooled = ensure_pretrained(901, ctx.configuration, extra_pools=(POOL_ID,), **kwargs)
    record = json.loads((pooled.parent / "config.json").read_text())
    assert record["data"]["extra_pools"] == [pools[0]]
    assert any(p.startswith(f"{pools[0]}/") for p in record["resolved"]["patients"])
    manifest = pretraining_api.data_manifest(ctx.dataset_name, (pools[0],))
    assert record["data"]["digest"] == data_digest(manifest)
    # the folder without pools is another one; the named encoder is checked against the pools it records
    plain_folder = pretraining_api.folder_for_config(
        ctx.dataset_name, ctx.configuration, "nnUNetPlans",
        pretraining_api.make_config("GRP", "cpu", 0, epochs=1, iterations_per_epoch=2, batch_size=4),
        data_digest(pretraining_api.data_manifest(ctx.dataset_name)))
    assert plain_folder != pooled.parent
    assert check_named_encoder(pooled, 901, ctx.configuration, "GRP", "nnUNetPlans") == pooled
    tampered = dict(record, data=dict(record["data"], extra_pools=[pools[1]]))
    original = (pooled.parent / "config.json").read_text()
    try:
        (pooled.parent / "config.json").write_text(json.dumps(tampered))
        with pytest.raises(ValueError, match="pretrained on data with digest"):
            check_named_encoder(pooled, 901, ctx.configuration, "GRP", "nnUNetPlans")
    finally:
        (pooled.parent / "config.json").write_text(original)


def test_trainers_read_the_pools_from_the_environment(monkeypatch):
    from nnunetv2_glrp.finetuning.pretrained_source import POOLS_ENV, describe_pretraining, extra_pools_from_environment

    monkeypatch.delenv(POOLS_ENV, raising=False)
    assert extra_pools_from_environment() == ()
    assert "extra pools" not in describe_pretraining("GLRP", "cpu", 0)
    monkeypatch.setenv(POOLS_ENV, "802, Dataset803_MnMs 804")
    assert extra_pools_from_environment() == ("802", "Dataset803_MnMs", "804")
    assert "extra pools 802, Dataset803_MnMs, 804" in describe_pretraining("GLRP", "cpu", 0)


def test_the_engine_sets_the_variables_the_trainers_read():
    """The engine hands its trainings the setting's pools (or removes the caller's; tests/test_engine_extra_pools.py)
    and a named encoder through the variables the trainers read."""
    from nnunetv2_glrp.finetuning import pretrained_source
    from nnunetv2_glrp.reproduction import training

    assert training.POOLS_ENV == pretrained_source.POOLS_ENV and training.ENCODER_ENV == pretrained_source.ENCODER_ENV
