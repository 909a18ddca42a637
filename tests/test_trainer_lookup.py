"""nnU-Net's own trainer lookup (built-ins first, then ``nnUNet_extTrainer``) finds every GLRP trainer."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from nnunetv2_glrp.environment import trainers_folder

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


def _trainers_module():
    """trainers/glrp_trainers.py imported as nnU-Net imports it (a top-level module), then dropped again."""
    import importlib

    sys.path.insert(0, os.fspath(trainers_folder()))
    try:
        return importlib.import_module("glrp_trainers")
    finally:
        sys.path.remove(os.fspath(trainers_folder()))
        sys.modules.pop("glrp_trainers", None)


def _parse(name: str) -> tuple[str, int | None, str, str]:
    """(family, k, recipe, budget) read off a trainer name with the documented grammar
    ``<Family>[_k<K>][_paper|_decwarm|_lpft|_enclr|_lld|_semi][_cpu|_cpu500|_cpulong|_cpu2000|_cpulongsgd]``: written here, independently of the code that makes the names."""
    match = re.fullmatch(r"([A-Za-z]+Trainer)(?:_k(\d+))?(?:_(paper|decwarm|lpft|enclr|lld|semi))?(?:_(cpu|cpu500|cpulong|cpu2000|cpulongsgd))?",
                         name)
    assert match, f"{name} does not follow the documented grammar"
    family, k, recipe, budget = match.groups()
    return family, int(k) if k else None, recipe or "nnunet", budget or "full"


def test_nnunet_lookup_finds_every_trainer_and_variant(capsys):
    """Every listed name is OUR class (nnU-Net's own lookup on a sample), whose pretraining method, k, recipe
    and budget are what the name says (parsed by the test's own grammar, the paper's method mapping typed out),
    and the listing has exactly the 8 x 8 x 7 x 6 combinations plus the six control trainers."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunetv2_glrp.cli import main
    from nnunetv2_glrp.finetuning.nnunet_control import NnunetControlTrainer

    assert main(["trainers"]) == 0
    listed = capsys.readouterr().out.split()
    controls = [n for n in listed if n.startswith("NnunetControlTrainer")]
    budgets = ("full", "cpu", "cpu500", "cpulong", "cpu2000", "cpulongsgd")
    assert controls == ["NnunetControlTrainer"] + [f"NnunetControlTrainer_{b}" for b in budgets[1:]]
    combos = {_parse(n) for n in listed if n not in controls}
    expected = {(f, k, r, b) for f in BASES for k in (None, 2, 6, 10, 15, 20, 30, 105)
                for r in ("nnunet", "paper", "decwarm", "lpft", "enclr", "lld", "semi") for b in budgets}
    assert combos == expected and len(listed) == len(expected) + 6 == 2694
    module = _trainers_module()
    # nnU-Net's own lookup (about 0.15 s a name) on every 59th name and the controls; the module's classes for all
    looked_up = set(listed[::59]) | set(controls)
    for name in listed:
        found = recursive_find_trainer_class_by_name(name) if name in looked_up else getattr(module, name)
        assert found.__name__ == name and issubclass(found, nnUNetTrainer)
        if name in controls:
            assert issubclass(found, NnunetControlTrainer) and found.budget.name == _parse(name)[3]
            continue
        assert found.__module__ == "glrp_trainers"  # ours, not a built-in of the same name
        family, k, recipe, budget = _parse(name)
        assert (found.pretraining_method, found.k_labeled, found.recipe.name, found.budget.name) == \
            (BASES[family], k, recipe, budget), name
    k6 = recursive_find_trainer_class_by_name("GLRPTrainer_k6")
    assert (k6.pretraining_method, k6.k_labeled, k6.recipe.name, k6.budget.name) == ("GLRP", 6, "nnunet", "full")
    assert k6.budget.num_epochs is None and k6.recipe.num_epochs == 1000  # nnU-Net's 1000 x 250 at full length
    random_cpu = recursive_find_trainer_class_by_name("RandomInitTrainer_k2_paper_cpu")
    assert (random_cpu.pretraining_method, random_cpu.k_labeled, random_cpu.recipe.name,
            random_cpu.budget.name) == (None, 2, "paper", "cpu")
    assert random_cpu.budget.num_epochs == 10 and random_cpu.budget.iterations_per_epoch == 20
    # the budget study's budgets: 1,000 iterations with Adam 1e-3 (cpulong) or nnU-Net's own SGD 1e-2 (cpulongsgd)
    from nnunetv2_glrp.finetuning.recipes import BUDGETS as BUDGETS_BY_NAME
    from nnunetv2_glrp.finetuning.recipes import NNUNET_RECIPE, ResolvedSchedule, recipe_for_budget

    for name, iterations, optimizer, lr in (("GLRPTrainer_k6_cpulong", 1000, "adam", 1e-3),
                                            ("NnunetControlTrainer_cpulongsgd", 1000, "sgd", 1e-2),
                                            ("RandomInitTrainer_k2_cpu2000", 2000, "adam", 1e-3),
                                            ("RandomInitTrainer_k2_cpu500", 500, "adam", 1e-3)):
        cls = recursive_find_trainer_class_by_name(name)
        recipe = recipe_for_budget(getattr(cls, "recipe", NNUNET_RECIPE), cls.budget)
        schedule = ResolvedSchedule.of(recipe, cls.budget)
        assert (schedule.num_epochs * schedule.iterations_per_epoch, recipe.optimizer, recipe.initial_lr) == \
            (iterations, optimizer, lr), name
    for name, field, value in (("GLRPTrainer_k6_lpft_cpulong", "encoder_frozen_fraction", 0.25),
                               ("GLRPTrainer_k6_enclr_cpulong", "encoder_lr_factor", 0.1),
                               ("GLRPTrainer_k2_lld_cpulong", "encoder_layer_decay", 0.7)):
        assert getattr(recursive_find_trainer_class_by_name(name).recipe, field) == value, name
    from nnunetv2_glrp.finetuning.semi_trainer import SemiSupervisedTrainerMixin

    for name in ("GLRPTrainer_k2_semi_cpu", "RandomInitTrainer_k2_semi_cpu", "GLRPTrainer_k6_semi",
                 "RandomInitTrainer_k6_semi_cpulong"):
        cls = recursive_find_trainer_class_by_name(name)
        assert issubclass(cls, SemiSupervisedTrainerMixin) and cls.recipe.semi.threshold == 0.95, name
    assert recipe_for_budget(recursive_find_trainer_class_by_name("GLRPTrainer_k2_semi_cpu").recipe,
                             BUDGETS_BY_NAME["cpu"]).optimizer == "adam"  # the cpu budgets' Adam switch applies
    assert not issubclass(recursive_find_trainer_class_by_name("GLRPTrainer_k2_cpu"), SemiSupervisedTrainerMixin)
    warm = recursive_find_trainer_class_by_name("GCLTrainer_k6_decwarm")
    assert (warm.recipe.encoder_frozen_fraction, warm.recipe.encoder_lr_factor) == (0.1, 0.5)


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
                         capture_output=True, encoding="utf-8", errors="replace", check=True)
    # 8 methods (5 + the SimCLR/GCL/PCL baselines) x 8 k x 7 recipes (nnunet, paper, decwarm, lpft, enclr, lld, semi)
    # at the cpu budget, plus NnunetControlTrainer_cpu; _tiny trainers are the tests' own
    assert out.stdout.split() == [str(8 * 8 * 7 + 1), "0"]
    assert [p for p in Path(tmp_path).rglob("*") if p.is_file()] == []


def test_trainers_command_lists_exactly_the_shipped_trainer_classes(capsys):
    """``nnUNetv2_glrp trainers`` (computed from the registry, without importing trainers/) prints exactly the
    trainer classes that trainers/glrp_trainers.py defines when nnU-Net imports it, no others."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunetv2_glrp.cli import main

    assert main(["trainers"]) == 0
    listed = capsys.readouterr().out.split()
    assert len(listed) == len(set(listed))
    for name in ("GLRPTrainer_k7", "GLRPTrainer_k2_tiny", "GLRPFineTuningTrainer", "nnUNetTrainer"):
        assert name not in listed
    module = _trainers_module()
    defined = [k for k, v in vars(module).items() if isinstance(v, type) and issubclass(v, nnUNetTrainer)]
    assert sorted(listed) == sorted(defined)


def test_trainers_help_spells_the_grammar_with_every_recipe_and_budget():
    from nnunetv2_glrp.commands.trainers import grammar

    assert grammar().startswith("<Method>Trainer[_k<K>][_paper|_decwarm|_lpft|_enclr|_lld|_semi]"
                                "[_cpu|_cpu500|_cpulong|_cpu2000|_cpulongsgd]")
