"""nnU-Net's own trainer lookup (built-ins first, then ``nnUNet_extTrainer``) finds every GLRP trainer."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nnunetv2_glrp.environment import trainers_folder
from nnunetv2_glrp.finetuning.patient_draw import PAPER_K_VALUES
from nnunetv2_glrp.finetuning.recipes import BUDGETS, RECIPES
from tiny_trainers.glrp_tiny_trainers import TINY_BUDGET

#: the shipped budgets and the tests' own tiny one (tests/tiny_trainers, on nnUNet_extTrainer via conftest)
ALL_BUDGETS = {**BUDGETS, TINY_BUDGET.name: TINY_BUDGET}

BASES = {"GLRPTrainer": "GLRP", "GRPTrainer": "GRP", "LRPTrainer": "LRP",
         "GLRPLinearTrainer": "GLRPLinear", "RandomInitTrainer": None}


def all_names() -> list[str]:
    names = []
    for base in BASES:
        for k in (None, *PAPER_K_VALUES):
            for recipe in RECIPES:
                for budget in ALL_BUDGETS:
                    name = base + (f"_k{k}" if k else "") + ("_paper" if recipe == "paper" else "")
                    names.append(name + ("" if budget == "full" else f"_{budget}"))
    return names


def test_ext_trainer_points_at_our_folder():
    assert os.fspath(trainers_folder()) in os.environ["nnUNet_extTrainer"].split(os.pathsep)


def test_nnunet_lookup_finds_every_trainer_and_variant():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    names = all_names()
    assert len(names) == 5 * 8 * 2 * 3 == 240
    assert "GLRPTrainer_k6" in names and "RandomInitTrainer_k2_cpu" in names
    for name in names:
        cls = recursive_find_trainer_class_by_name(name)
        assert cls.__name__ == name
        # ours, not a built-in of the same name; the _tiny ones from the tests' folder
        assert cls.__module__ == ("glrp_tiny_trainers" if name.endswith("_tiny") else "glrp_trainers")
        assert issubclass(cls, nnUNetTrainer)
        assert cls.pretraining_method == BASES[name.split("_")[0]]
        k_part = [p for p in name.split("_") if p.startswith("k") and p[1:].isdigit()]
        assert cls.k_labeled == (int(k_part[0][1:]) if k_part else None)
        assert cls.recipe.name == ("paper" if "_paper" in name else "nnunet")
        suffix = name.rsplit("_", 1)[-1]
        assert cls.budget.name == (suffix if suffix in ("cpu", "tiny") else "full")


def test_unknown_trainer_is_a_clear_error():
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    with pytest.raises(RuntimeError, match="GLRPTrainer_k7"):
        recursive_find_trainer_class_by_name("GLRPTrainer_k7")


def test_importing_the_trainers_has_no_side_effects(tmp_path):
    """A fresh interpreter imports trainers/ with empty nnU-Net folders: nothing gets written."""
    env = dict(os.environ)
    for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / name).mkdir()
        env[name] = os.fspath(tmp_path / name)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import glrp_trainers as t; "
            "print(sum(isinstance(v, type) and k.endswith('_cpu') for k, v in vars(t).items()), "
            "sum(isinstance(v, type) and k.endswith('_tiny') for k, v in vars(t).items()))")
    out = subprocess.run([sys.executable, "-c", code, os.fspath(trainers_folder())], env=env,
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == [str(5 * 8 * 2), "0"]  # the _tiny trainers are the tests' own
    assert [p for p in Path(tmp_path).rglob("*") if p.is_file()] == []


def test_trainers_command_lists_exactly_the_shipped_trainer_classes(capsys):
    """``nnUNetv2_glrp trainers`` prints the classes of trainers/ that nnU-Net's lookup resolves, no others."""
    import importlib
    import sys

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunetv2_glrp.cli import main

    assert main(["trainers"]) == 0
    listed = capsys.readouterr().out.split()
    assert len(listed) == len(set(listed)) == 5 * 8 * 2 * 2
    for name in ("GLRPTrainer", "GLRPTrainer_k6", "GRPTrainer_k2_paper", "RandomInitTrainer_k2_cpu",
                 "GLRPLinearTrainer_k105_paper_cpu", "LRPTrainer_paper"):
        assert name in listed
    for name in ("GLRPTrainer_k7", "GLRPTrainer_k2_tiny", "GLRPFineTuningTrainer", "nnUNetTrainer"):
        assert name not in listed
    sys.path.insert(0, os.fspath(trainers_folder()))
    try:
        module = importlib.import_module("glrp_trainers")
    finally:
        sys.path.remove(os.fspath(trainers_folder()))
        sys.modules.pop("glrp_trainers", None)
    defined = {k for k, v in vars(module).items()
               if isinstance(v, type) and issubclass(v, nnUNetTrainer) and v.__module__ == "glrp_trainers"}
    assert set(listed) == defined
    for name in listed[::37]:  # a sample through nnU-Net's own lookup (the full one is tested above)
        assert recursive_find_trainer_class_by_name(name).__name__ == name
