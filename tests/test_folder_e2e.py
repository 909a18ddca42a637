"""End to end on an LV + MYO-only dataset (the paper's private-hospital case): ``make-phantom --layout folder``
-> ``convert-folder --labels background=0,LV=1,MYO=2`` -> plan/preprocess (labeled + unlabeled) -> GLRP
pretraining + fine-tuning (``GLRPTrainer_k2_tiny``) -> ``predict`` -> ``evaluate`` with the clinical indices,
which hold LV volumes, EF and mass but nothing of the RV."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from nnunet_subprocess import run_checked
from nnunetv2_glrp.cli import main
from nnunetv2_glrp.environment import nnunet_command

DATASET_ID = 985
TRAINER = "GLRPTrainer_k2_tiny"


def test_lv_myo_only_dataset_pretrains_fine_tunes_predicts_and_evaluates(tmp_path, capsys):
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    source = tmp_path / "folder"
    assert main(["make-phantom", str(source), "--layout", "folder", "--patients", "6", "--frames", "3",
                 "--difficulty", "easy"]) == 0
    assert main(["convert-folder", str(source), "-d", str(DATASET_ID), "--labels", "background=0,LV=1,MYO=2",
                 "--table", str(source / "cases.csv"), "--split", "4:1:1", "--name", "LVMYO"]) == 0
    raw = Path(os.environ["nnUNet_raw"]) / f"Dataset{DATASET_ID}_LVMYO"
    config = prepare_dataset(DATASET_ID, overlay="nnunet_cpu", num_processes=1)
    log = run_checked([nnunet_command("nnUNetv2_train"), str(DATASET_ID), config, "0", "-tr", TRAINER, "-device", "cpu"])
    assert "pretrained encoder tensors (GLRP)" in log  # the encoder came from GLRP pretraining on the unlabeled pool
    model = Path(os.environ["nnUNet_results"]) / f"Dataset{DATASET_ID}_LVMYO" / f"{TRAINER}__nnUNetPlans__{config}"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()
    pretrainings = list((model.parent / "glrp_pretraining").rglob("pretrained_encoder.pth"))
    assert len(pretrainings) == 1, pretrainings

    images = tmp_path / "images"
    images.mkdir()
    for path in (raw / "imagesTs").glob("*_0000.nii.gz"):
        shutil.copy(path, images / path.name)
    pred = tmp_path / "pred"
    assert main(["predict", "-i", str(images), "-o", str(pred), "-d", str(DATASET_ID), "-c", config, "-f", "0",
                 "-tr", TRAINER, "-device", "cpu", "--crf", "off"]) == 0
    capsys.readouterr()
    out = tmp_path / "evaluation"
    assert main(["evaluate", str(pred), str(raw / "labelsTs"), "-o", str(out),
                 "--dataset_json", str(raw / "dataset.json")]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert sorted(summary["classes"]) == ["LV", "MYO"]
    assert sorted(summary["clinical"]["quantities"]) == ["LV_EDV_ml", "LV_EF_pct", "LV_ESV_ml", "LV_SV_ml",
                                                         "LV_mass_g"]
    with open(out / "clinical.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    test_patients = json.loads((raw / "glrp_split.json").read_text(encoding="utf-8"))["test"]
    assert sorted({r["patient"] for r in rows}) == sorted(test_patients)
    assert not any(r["quantity"].startswith("RV") for r in rows)
    reference_edv = [float(r["reference"]) for r in rows if r["quantity"] == "LV_EDV_ml"]
    assert reference_edv and all(v > 0 for v in reference_edv)
    # without --dataset_json, a labelsTs folder next to its dataset.json gives the same labels
    assert main(["evaluate", str(pred), str(raw / "labelsTs"), "-o", str(tmp_path / "evaluation2")]) == 0
    again = json.loads((tmp_path / "evaluation2" / "summary.json").read_text(encoding="utf-8"))
    assert sorted(again["classes"]) == ["LV", "MYO"]
