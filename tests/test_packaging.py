"""A wheel (``pip install .``) carries plans/ and trainers/: nnU-Net's lookup finds the trainers from it.

Equivalent of installing the wheel into a fresh venv: the wheel is built from a copy of the sources,
unpacked (a wheel is a zip of site-packages content) and put first on ``PYTHONPATH`` of a fresh
interpreter, so that neither the checkout nor an editable install can supply ``plans/`` or ``trainers/``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import nnunetv2_glrp

REPO = Path(nnunetv2_glrp.__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "nnunetv2_glrp", "trainers", "plans")

CHECK = """
import nnunetv2_glrp
from nnunetv2_glrp.environment import configure_nnunet_environment
configure_nnunet_environment()
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2_glrp.preparation.overlays import resolve_overlay_path
trainer = recursive_find_trainer_class_by_name("GLRPTrainer_k6")
print("PACKAGE", nnunetv2_glrp.__file__)
print("TRAINER", trainer.__name__, trainer.pretraining_method, trainer.k_labeled)
print("PLANS", resolve_overlay_path("paper_unet"))
"""


def test_wheel_ships_plans_and_trainers_found_by_nnunet(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy2
        copy(REPO / name, source / name, **({"ignore": shutil.ignore_patterns("__pycache__")}
                                            if (REPO / name).is_dir() else {}))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                            "-w", os.fspath(tmp_path / "dist")], cwd=source, capture_output=True, encoding="utf-8", errors="replace")
    assert built.returncode == 0, built.stdout[-2000:] + built.stderr[-2000:]
    wheel = next((tmp_path / "dist").glob("nnunetv2_glrp-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "nnunetv2_glrp/_shipped/trainers/glrp_trainers.py" in names
    assert {f"nnunetv2_glrp/_shipped/plans/{p.name}" for p in (REPO / "plans").glob("*.json")} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_") and k != "PYTHONPATH"}
    env.update(PYTHONPATH=os.fspath(site), GLRP_DATA=os.fspath(tmp_path / "data"))
    run = subprocess.run([sys.executable, "-c", CHECK], cwd=tmp_path, env=env, capture_output=True, encoding="utf-8", errors="replace")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    lines = dict(line.split(" ", 1) for line in run.stdout.splitlines() if line.split(" ", 1)[0].isupper())
    assert Path(lines["PACKAGE"]).is_relative_to(site)
    assert lines["TRAINER"] == "GLRPTrainer_k6 GLRP 6"
    # nnU-Net's own report of where its lookup found the class
    assert f"Using trainer 'GLRPTrainer_k6' from: {site / 'nnunetv2_glrp/_shipped/trainers'}" in run.stdout
    assert Path(lines["PLANS"]) == site / "nnunetv2_glrp/_shipped/plans/paper_unet.json"
