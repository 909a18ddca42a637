"""Plans overlays in nnU-Net's plans file, nnUNetv2_preprocess on them, and prepare_dataset end to end.

A tiny raw dataset (``write_tiny_raw_dataset``, also used by test_unlabeled_preprocessing.py) keeps
the overlay tests independent of the converter; prepare_dataset runs on the shared phantom.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.environment import nnunet_command
from nnunetv2_glrp.preparation.overlays import PLANS_FOLDER, apply_plans_overlay, resolve_overlay_path
from nnunetv2_glrp.dataset_split import read_split
from nnunetv2_glrp.preparation.pipeline import prepare_dataset
from nnunetv2_glrp.preparation.planning import plan_dataset

TINY_PLANS_ID = 951


def write_tiny_raw_dataset(dataset_id: int, n_patients: int = 3, seed: int = 0,
                           patients: list[int] | None = None, with_split: bool = False) -> Path:
    """Raw dataset in the converter's layout: ED/ES labeled, 3 cine frames unlabeled (t00 is the ED image).

    ``patients`` (default 1..n_patients) are the patient numbers; an existing folder is replaced, like
    a re-conversion. ``with_split`` also writes a glrp_split.json (last patient = val, no test)."""
    rng = np.random.default_rng(seed)
    patients = list(range(1, n_patients + 1)) if patients is None else patients
    folder = Path(os.environ["nnUNet_raw"]) / f"Dataset{dataset_id}_TINY"
    shutil.rmtree(folder, ignore_errors=True)
    for sub in ("imagesTr", "labelsTr", "unlabeledTr"):
        (folder / sub).mkdir(parents=True, exist_ok=True)

    def save(array, path):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing((1.5, 1.5, 10.0))
        sitk.WriteImage(image, os.fspath(path))

    for p in patients:
        z, y, x = 4 + p % 2, 38 + 2 * p, 42
        yy, xx = np.mgrid[:y, :x]
        for t in range(3):
            radius = 7 + 2 * t
            distance = np.hypot(yy - y / 2, xx - x / 2)
            image = 100 + 300 * (distance < radius) + rng.normal(0, 20, (z, y, x))
            image = image.astype(np.float32)
            save(image, folder / "unlabeledTr" / f"patient{p:03d}_t{t:02d}_0000.nii.gz")
            if t in (0, 2):
                name = "ED" if t == 0 else "ES"
                label = np.broadcast_to((distance < radius) * 3 + ((distance >= radius) & (distance < radius + 3)) * 2,
                                        (z, y, x)).astype(np.uint8)
                save(image, folder / "imagesTr" / f"patient{p:03d}_{name}_0000.nii.gz")
                save(label, folder / "labelsTr" / f"patient{p:03d}_{name}.nii.gz")
    dataset_json = {"channel_names": {"0": "cineMRI"}, "labels": {"background": 0, "RV": 1, "MYO": 2, "LV": 3},
                    "numTraining": 2 * len(patients), "file_ending": ".nii.gz"}
    (folder / "dataset.json").write_text(json.dumps(dataset_json, indent=2))
    if with_split:
        names = [f"patient{p:03d}" for p in patients]
        cases = {f"{n}_{f}": {"kind": "labeled", "patient": n, "set": "train" if n != names[-1] else "val"}
                 for n in names for f in ("ED", "ES")}
        split = {"split": "tiny", "seed": seed, "train": names[:-1], "val": names[-1:], "test": [], "cases": cases}
        (folder / "glrp_split.json").write_text(json.dumps(split, indent=2))
    return folder


def plan_tiny_dataset(dataset_id: int) -> Path:
    """Tiny raw dataset + nnU-Net fingerprint and default plans (no preprocessing); the plans file."""
    folder = write_tiny_raw_dataset(dataset_id)
    plan_dataset(dataset_id, verify=False)
    return Path(os.environ["nnUNet_preprocessed"]) / folder.name / "nnUNetPlans.json"


@pytest.fixture(scope="module")
def tiny_plans() -> Path:
    return plan_tiny_dataset(TINY_PLANS_ID)


def test_overlay_names_resolve_to_the_plans_folder(tmp_path):
    assert resolve_overlay_path("paper_unet_cpu") == PLANS_FOLDER / "paper_unet_cpu.json"
    assert resolve_overlay_path("paper_unet.json") == PLANS_FOLDER / "paper_unet.json"
    own = tmp_path / "mine.json"
    own.write_text("{}")
    assert resolve_overlay_path(own) == own
    with pytest.raises(FileNotFoundError, match="no_such_plan"):
        resolve_overlay_path("no_such_plan")
    for old, new in (("paper", "paper_unet"), ("paper_cpu.json", "paper_unet_cpu")):  # renamed, not aliased
        with pytest.raises(FileNotFoundError, match=f"is now called '{new}'"):
            resolve_overlay_path(old)


def test_overlay_before_planning_is_a_clear_error():
    write_tiny_raw_dataset(952, n_patients=1)
    with pytest.raises(FileNotFoundError, match="plan_and_preprocess"):
        apply_plans_overlay(952, "paper_unet_cpu")


def test_overlays_add_configurations_and_leave_nnunet_ones_alone(tiny_plans):
    before = json.loads(tiny_plans.read_text())
    assert apply_plans_overlay(TINY_PLANS_ID, "paper_unet_cpu") == ["paper_unet_cpu"]
    assert apply_plans_overlay(TINY_PLANS_ID, "paper_unet") == ["paper_unet"]
    plans = json.loads(tiny_plans.read_text())
    for name, config in before["configurations"].items():
        assert plans["configurations"][name] == config, f"nnU-Net configuration {name} was modified"

    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    manager = PlansManager(os.fspath(tiny_plans))
    small = manager.get_configuration("paper_unet_cpu")
    assert small.data_identifier == "nnUNetPlans_paper_unet_cpu"
    assert small.spacing == [2.5, 2.5] and small.patch_size == [128, 128] and small.batch_size == 16
    assert small.network_arch_init_kwargs["features_per_stage"] == [16, 32, 64, 128, 256]
    assert small.normalization_schemes == manager.get_configuration("2d").normalization_schemes
    paper = manager.get_configuration("paper_unet")
    kwargs = paper.network_arch_init_kwargs
    assert paper.data_identifier == "nnUNetPlans_paper_unet"
    assert paper.spacing == [1.25, 1.25] and paper.patch_size == [288, 288] and paper.batch_size == 12
    assert kwargs["n_stages"] == 5 and kwargs["features_per_stage"] == [48, 96, 192, 384, 768]
    assert kwargs["strides"] == [[1, 1]] + [[2, 2]] * 4 and kwargs["kernel_sizes"] == [[3, 3]] * 5
    assert kwargs["n_conv_per_stage"] == [2] * 5 and kwargs["n_conv_per_stage_decoder"] == [2] * 4
    assert kwargs["norm_op"].endswith("BatchNorm2d") and kwargs["nonlin"].endswith("ReLU")
    # median size of the new configuration: nnU-Net's median shape in mm over the new spacing
    shape_mm = np.array(plans["original_median_shape_after_transp"][1:]) * plans["original_median_spacing_after_transp"][1:]
    np.testing.assert_allclose(small.median_image_size_in_voxels, shape_mm / 2.5, atol=0.05)

    # idempotent: a second application leaves the file byte-identical and untouched
    content, mtime = tiny_plans.read_bytes(), tiny_plans.stat().st_mtime_ns
    assert apply_plans_overlay(TINY_PLANS_ID, "paper_unet_cpu") == ["paper_unet_cpu"]
    assert tiny_plans.read_bytes() == content and tiny_plans.stat().st_mtime_ns == mtime


def test_overlay_errors_name_the_file(tiny_plans, tmp_path):
    overlay = json.loads((PLANS_FOLDER / "paper_unet_cpu.json").read_text())
    bad_patch = json.loads(json.dumps(overlay))
    bad_patch["configurations"]["odd_patch"] = bad_patch["configurations"].pop("paper_unet_cpu")
    bad_patch["configurations"]["odd_patch"]["patch_size"] = [100, 128]
    bad_patch["configurations"]["odd_patch"]["data_identifier"] = "odd"
    (tmp_path / "odd.json").write_text(json.dumps(bad_patch))
    with pytest.raises(ValueError, match=r"odd\.json.*not divisible"):
        apply_plans_overlay(TINY_PLANS_ID, tmp_path / "odd.json")

    hijack = json.loads(json.dumps(overlay))
    hijack["configurations"] = {"3d_fullres": {**overlay["configurations"]["paper_unet_cpu"], "data_identifier": "x"}}
    (tmp_path / "hijack.json").write_text(json.dumps(hijack))
    before = tiny_plans.read_bytes()
    with pytest.raises(ValueError, match="refusing to modify"):
        apply_plans_overlay(TINY_PLANS_ID, tmp_path / "hijack.json")
    assert tiny_plans.read_bytes() == before


def test_nnunet_preprocess_command_runs_the_paper_unet_cpu_configuration(tiny_plans):
    apply_plans_overlay(TINY_PLANS_ID, "paper_unet_cpu")
    result = subprocess.run([nnunet_command("nnUNetv2_preprocess"), "-d", str(TINY_PLANS_ID), "-c", "paper_unet_cpu",
                             "-np", "1"], capture_output=True, encoding="utf-8", errors="replace", env=os.environ.copy(), timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    folder = tiny_plans.parent / "nnUNetPlans_paper_unet_cpu"
    from nnunetv2.training.dataloading.nnunet_dataset import nnUNetDatasetBlosc2

    dataset = nnUNetDatasetBlosc2(os.fspath(folder))
    assert sorted(dataset.identifiers) == [f"patient{p:03d}_{f}" for p in (1, 2, 3) for f in ("ED", "ES")]
    data, seg, _, properties = dataset.load_case("patient002_ED")
    # 2d configuration: slices keep their 10 mm, in-plane 42 px at 1.5 mm -> 25 px at 2.5 mm
    assert data.shape == (1, 4, 25, 25) and seg.shape == data.shape
    assert set(np.unique(seg[:])) <= {0, 2, 3}


def test_prepare_dataset_rejects_a_dataset_failing_the_integrity_check():
    folder = write_tiny_raw_dataset(953, n_patients=1)
    label = folder / "labelsTr" / "patient001_ED.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 10, 10), np.uint8)), os.fspath(label))
    with pytest.raises(ValueError, match="Dataset953_TINY.*integrity check failed"):
        prepare_dataset(953, overlay="paper_unet_cpu", num_processes=1)
    assert not (Path(os.environ["nnUNet_preprocessed"]) / folder.name / "dataset_fingerprint.json").exists()


def test_prepare_dataset_on_the_phantom(phantom_preprocessed, phantom_raw_dataset):
    assert phantom_preprocessed == "paper_unet_cpu"
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / phantom_raw_dataset.name
    raw_json = json.loads((phantom_raw_dataset / "dataset.json").read_text())
    labeled = sorted(p.stem for p in (preprocessed / "nnUNetPlans_paper_unet_cpu").glob("*.pkl"))
    assert len(labeled) == raw_json["numTraining"]
    n_unlabeled = len(list((phantom_raw_dataset / "unlabeledTr").glob("*_0000.nii.gz")))
    assert n_unlabeled > 0
    assert len(list((preprocessed / "nnUNetPlans_paper_unet_cpu_unlabeled").glob("*.pkl"))) == n_unlabeled
    assert (preprocessed / "splits_final.json").is_file()
    assert not (preprocessed / "nnUNetPlans_2d").exists(), "nnU-Net's own configurations must not be preprocessed"

    # a second call redoes nothing
    stamps = {p: p.stat().st_mtime_ns for p in preprocessed.rglob("*.b2nd")}
    assert prepare_dataset(phantom_raw_dataset.name, overlay="paper_unet_cpu") == "paper_unet_cpu"
    assert {p: p.stat().st_mtime_ns for p in preprocessed.rglob("*.b2nd")} == stamps


def test_apply_plans_command(tiny_plans, capsys):
    from nnunetv2_glrp.cli import main

    assert main(["apply-plans", "-d", str(TINY_PLANS_ID), "--overlay", "paper_unet"]) == 0
    assert "from paper_unet: paper_unet\n" in capsys.readouterr().out
    assert main(["apply-plans", str(TINY_PLANS_ID), "paper_unet"]) == 0  # the earlier positional form
    assert "from paper_unet: paper_unet\n" in capsys.readouterr().out
    assert main(["apply-plans", str(TINY_PLANS_ID), "no_such_overlay"]) == 2
    assert "no_such_overlay" in capsys.readouterr().err


def _case_stems(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.pkl"))


def test_prepare_redoes_what_was_made_from_another_case_set(caplog):
    """Re-converting with another patient set (same case COUNT) must not reuse fingerprint, plans or arrays."""
    dataset_id = 955
    folder = write_tiny_raw_dataset(dataset_id, patients=[1, 2, 3], with_split=True)
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / folder.name
    labeled = preprocessed / "nnUNetPlans_paper_unet_cpu"
    unlabeled = preprocessed / "nnUNetPlans_paper_unet_cpu_unlabeled"
    fingerprint = preprocessed / "dataset_fingerprint.json"
    assert prepare_dataset(dataset_id, overlay="paper_unet_cpu", verify=False) == "paper_unet_cpu"
    assert _case_stems(labeled) == [f"patient{p:03d}_{f}" for p in (1, 2, 3) for f in ("ED", "ES")]
    assert _case_stems(unlabeled) == [f"patient{p:03d}_t{t:02d}" for p in (1, 2, 3) for t in range(3)]

    def stamps() -> dict[Path, int]:
        return {p: p.stat().st_mtime_ns for p in preprocessed.rglob("*") if p.suffix in (".b2nd", ".pkl")}

    # unchanged raw dataset: nothing is redone
    before, fingerprint_stamp = stamps(), fingerprint.stat().st_mtime_ns
    prepare_dataset(dataset_id, overlay="paper_unet_cpu", verify=False)
    assert stamps() == before and fingerprint.stat().st_mtime_ns == fingerprint_stamp

    # another split of the same cases: fingerprint and plans redone; the plans come out identical, so the arrays stay
    split = json.loads((folder / "glrp_split.json").read_text())
    split["train"], split["val"] = split["train"][1:] + split["val"], split["train"][:1]
    (folder / "glrp_split.json").write_text(json.dumps(split))
    with pytest.raises(ValueError, match=f"the raw split of {folder.name} changed after prepare .*; "
                                         f"rerun `nnUNetv2_glrp prepare -d {dataset_id} ...`"):
        read_split(preprocessed)  # the copy prepare wrote is older than the raw split: every reader stops
    caplog.set_level("WARNING", logger="nnunetv2_glrp.preparation.planning")
    prepare_dataset(dataset_id, overlay="paper_unet_cpu", verify=False)
    assert read_split(preprocessed)["val"] == split["val"]  # prepare rewrote the copy with the new digest
    assert "glrp_split_sha256" in caplog.text and fingerprint.stat().st_mtime_ns != fingerprint_stamp
    assert stamps() == before

    # re-conversion with patient 3 replaced by patient 4: as many cases as before, other identifiers
    write_tiny_raw_dataset(dataset_id, patients=[1, 2, 4], with_split=True)
    old_fingerprint = fingerprint.read_text()
    prepare_dataset(dataset_id, overlay="paper_unet_cpu", verify=False)
    expected_labeled = [f"patient{p:03d}_{f}" for p in (1, 2, 4) for f in ("ED", "ES")]
    expected_unlabeled = [f"patient{p:03d}_t{t:02d}" for p in (1, 2, 4) for t in range(3)]
    assert fingerprint.read_text() != old_fingerprint  # patient 4's images have another shape
    assert _case_stems(labeled) == expected_labeled
    assert _case_stems(unlabeled) == expected_unlabeled
    assert not [p for p in preprocessed.rglob("patient003*")], "outputs of a case that left the dataset remain"
    assert json.loads((preprocessed / "glrp_fingerprint.json").read_text())["raw"]["labeled_cases"] == expected_labeled
    labeled_record = json.loads((preprocessed / "glrp_preprocessing_nnUNetPlans_paper_unet_cpu.json").read_text())
    unlabeled_record = json.loads(
        (preprocessed / "glrp_preprocessing_nnUNetPlans_paper_unet_cpu_unlabeled.json").read_text())
    assert labeled_record["cases"] == expected_labeled and unlabeled_record["cases"] == expected_unlabeled
    split_hash = hashlib.sha256((folder / "glrp_split.json").read_bytes()).hexdigest()
    assert labeled_record["glrp_split_sha256"] == unlabeled_record["glrp_split_sha256"] == split_hash
    assert "patient004_ED" in (preprocessed / "splits_final.json").read_text()
    assert "patient003" not in (preprocessed / "splits_final.json").read_text()


def _paper_unet_cpu_with(change) -> dict:
    overlay = json.loads((PLANS_FOLDER / "paper_unet_cpu.json").read_text())
    spec = overlay["configurations"].pop("paper_unet_cpu")
    spec["data_identifier"] = "{plans_identifier}_schema_test"
    overlay["configurations"]["schema_test"] = spec
    change(overlay, spec, spec["architecture"]["arch_kwargs"])
    return overlay


def _set(target_key, value, where="spec"):
    def change(overlay, spec, kwargs):
        {"spec": spec, "kwargs": kwargs, "arch": spec["architecture"]}[where][target_key] = value
    return change


BAD_OVERLAYS = [  # (id, overlay content or change, field named in the error, problem)
    ("top-level-list", ["paper_unet_cpu"], "top level", "must be an object"),
    ("arch-kwargs-null", _set("arch_kwargs", None, "arch"), "architecture.arch_kwargs", "must be an object"),
    ("patch-size-int", _set("patch_size", 128), "schema_test.patch_size", "non-empty list of positive ints"),
    ("string-number", _set("batch_size", "16"), "schema_test.batch_size", "integer >= 1"),
    ("string-in-list", _set("spacing", [2.5, "2.5"]), r"schema_test.spacing\[1\]", "positive number"),
    ("negative-spacing", _set("spacing", [2.5, -2.5]), r"schema_test.spacing\[1\]", "positive number"),
    ("1d-strides", _set("strides", [1, 2, 2, 2, 2], "kwargs"), "arch_kwargs.strides", "one list of per-axis"),
    ("batch-size-0", _set("batch_size", 0), "schema_test.batch_size", "integer >= 1"),
    ("unknown-class", _set("network_class_name", "dynamic_network_architectures.NoSuchUNet", "arch"),
     "architecture.network_class_name", "not a class nnU-Net can import"),
    ("conv3d-in-2d", _set("conv_op", "torch.nn.modules.conv.Conv3d", "kwargs"), "arch_kwargs.conv_op",
     "Conv3d in a 2D configuration"),
    ("3d-kernels-in-2d", _set("kernel_sizes", [[3, 3, 3]] * 5, "kwargs"), r"arch_kwargs.kernel_sizes\[0\]",
     "has 3 axes; the configuration is 2D"),
    ("typo-key", _set("batchsize", 16), "schema_test.batchsize", "not a key of an nnU-Net configuration"),
    ("features-short", _set("features_per_stage", [16, 32], "kwargs"), "arch_kwargs.features_per_stage",
     "has 2 entries; n_stages = 5 needs 5"),
    ("nan-spacing", _set("spacing", [2.5, float("nan")]), r"schema_test.spacing\[1\]", "positive number"),
]


@pytest.mark.parametrize("kind, content, field, problem", BAD_OVERLAYS, ids=[b[0] for b in BAD_OVERLAYS])
def test_malformed_overlay_is_a_one_line_error_naming_file_and_field(tiny_plans, tmp_path, capsys,
                                                                      kind, content, field, problem):
    from nnunetv2_glrp.cli import main

    overlay = content if not callable(content) else _paper_unet_cpu_with(content)
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps(overlay))
    before = tiny_plans.read_bytes()
    with pytest.raises(ValueError, match=f"{kind}.json: .*{field}: .*{problem}"):
        apply_plans_overlay(TINY_PLANS_ID, path)
    assert main(["apply-plans", "-d", str(TINY_PLANS_ID), "--overlay", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("nnUNetv2_glrp apply-plans: error: ") and f"{kind}.json" in err
    assert "\n" not in err and "Traceback" not in err
    assert tiny_plans.read_bytes() == before


def test_prepare_checks_the_overlay_before_fingerprinting(tmp_path, monkeypatch):
    from nnunetv2_glrp.preparation import pipeline

    path = tmp_path / "bad.json"
    path.write_text(json.dumps(_paper_unet_cpu_with(_set("batch_size", 0))))
    monkeypatch.setattr(pipeline, "plan_dataset", lambda *a, **k: pytest.fail("planned before checking the overlay"))
    with pytest.raises(ValueError, match="bad.json: configurations.schema_test.batch_size"):
        prepare_dataset(TINY_PLANS_ID, overlay=path)


def test_prepare_refuses_a_truncated_raw_file_before_fingerprinting():
    folder = write_tiny_raw_dataset(956, n_patients=1)
    frame = folder / "unlabeledTr" / "patient001_t01_0000.nii.gz"
    data = frame.read_bytes()
    frame.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match=r"Dataset956_TINY: 1 image file\(s\) incomplete .*patient001_t01_0000"):
        prepare_dataset(956, overlay="paper_unet_cpu", num_processes=1)
    assert not (Path(os.environ["nnUNet_preprocessed"]) / folder.name / "dataset_fingerprint.json").exists()
