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

#: the shipped budgets and the tests' own tiny one (tests/tiny_trainers, on nnUNet_extTrainer via conftest)

BASES = {"GLRPTrainer": "GLRP", "GRPTrainer": "GRP", "LRPTrainer": "LRP",
         "GLRPLinearTrainer": "GLRPLinear", "RandomInitTrainer": None,
         "SimCLRTrainer": "SimCLR", "GCLTrainer": "GCL", "PCLTrainer": "PCL"}


def test_ext_trainer_points_at_our_folder():
    assert os.fspath(trainers_folder()) in os.environ["nnUNet_extTrainer"].split(os.pathsep)


def test_environment_defaults_fill_only_unset_variables(tmp_path):
    from nnunetv2_glrp.environment import configure_nnunet_environment

    env = {"nnUNet_raw": "/elsewhere/raw"}
    folders = configure_nnunet_environment(tmp_path, environ=env, create=False)
    assert folders["nnUNet_raw"] == "/elsewhere/raw"
    assert folders["nnUNet_results"] == os.fspath(tmp_path.resolve() / "nnUNet_results")
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"  # idle OpenMP threads sleep instead of spinning on shared cores
    env = {"OMP_WAIT_POLICY": "ACTIVE"}
    configure_nnunet_environment(tmp_path, environ=env, create=False)
    assert env["OMP_WAIT_POLICY"] == "ACTIVE"
    assert not (tmp_path / "nnUNet_raw").exists()


def test_nnunet_lookup_finds_every_trainer_and_variant():
    """Every trainer class of the trainers module, hand-written or generated, is what nnU-Net's lookup returns
    for its name, and its name spells its attributes; every (method, k, recipe) has its full and cpu budgets."""
    import importlib.util

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunetv2_glrp.finetuning.trainer_base import GLRPFineTuningTrainer
    from nnunetv2_glrp.finetuning.variants import variant_name

    spec = importlib.util.spec_from_file_location("glrp_trainers", trainers_folder() / "glrp_trainers.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # a copy of the module nnU-Net imports (and then drops from sys.modules)
    classes = {name: cls for name, cls in vars(module).items()
               if isinstance(cls, type) and issubclass(cls, GLRPFineTuningTrainer) and cls.__module__ == module.__name__}
    for name, cls in classes.items():
        found = recursive_find_trainer_class_by_name(name)
        assert found.__name__ == name and issubclass(found, nnUNetTrainer)
        assert found.__module__ == "glrp_trainers"  # ours, not a built-in of the same name
        assert (found.pretraining_method, found.k_labeled, found.recipe, found.budget) == \
            (cls.pretraining_method, cls.k_labeled, cls.recipe, cls.budget), name
        base = name.split("_")[0]
        assert found.pretraining_method == BASES[base]
        assert variant_name(base, found.k_labeled, found.recipe, found.budget) == name
    for base in BASES:
        for k in (None, *PAPER_K_VALUES):
            for recipe in RECIPES.values():
                for budget in ("full", "cpu"):
                    name = variant_name(base, k, recipe, BUDGETS[budget])
                    assert name in classes, name
                    assert (classes[name].k_labeled, classes[name].recipe.name, classes[name].budget.name) == \
                        (k, recipe.name, budget)
    k6 = recursive_find_trainer_class_by_name("GLRPTrainer_k6")
    assert (k6.pretraining_method, k6.k_labeled, k6.recipe.name, k6.budget.name) == ("GLRP", 6, "nnunet", "full")
    random_cpu = recursive_find_trainer_class_by_name("RandomInitTrainer_k2_paper_cpu")
    assert (random_cpu.pretraining_method, random_cpu.k_labeled, random_cpu.recipe.name,
            random_cpu.budget.name) == (None, 2, "paper", "cpu")


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
    # 8 methods (5 + the SimCLR/GCL/PCL baselines) x 8 k x 3 recipes at the cpu budget, plus NnunetControlTrainer_cpu;
    # _tiny trainers are the tests' own
    assert out.stdout.split() == [str(8 * 8 * 3 + 1), "0"]
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
    assert len(listed) == len(set(listed)) == 8 * 8 * 3 * 2 + 1  # 8 methods incl. baselines; + NnunetControlTrainer_cpu
    assert "NnunetControlTrainer_cpu" in listed
    for name in ("GLRPTrainer", "GLRPTrainer_k6", "GRPTrainer_k2_paper", "GLRPTrainer_k6_decwarm_cpu", "RandomInitTrainer_k2_cpu",
                 "GLRPLinearTrainer_k105_paper_cpu", "LRPTrainer_paper", "SimCLRTrainer_k2_paper_cpu",
                 "GCLTrainer_k6_decwarm", "PCLTrainer"):
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
