"""Shared fixtures.

nnU-Net reads nnUNet_raw/nnUNet_preprocessed/nnUNet_results once, at import time, so this file
points them at a fresh temporary folder before anything imports nnunetv2. Tests that need a dataset
use the session fixtures below, which build one phantom dataset (10 patients) once per session and
share it; tests must not modify it (copy it, or use another dataset id, to mutate).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="glrp-tests-"))
for _name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
    os.environ[_name] = os.fspath(_SESSION_ROOT / _name)
os.environ.pop("nnUNet_extTrainer", None)
os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads OpenMP (environment.THREAD_DEFAULTS)
# the test trainers skip nnU-Net's end-of-training validation unless a test needs it (tests/tiny_trainers)
os.environ["GLRP_TEST_FINAL_VALIDATION"] = "0"

from nnunetv2_glrp.environment import configure_nnunet_environment  # noqa: E402

configure_nnunet_environment(_SESSION_ROOT)
# test-only trainers (the ``_tiny`` budget), found after the shipped ones
TINY_TRAINERS = Path(__file__).resolve().parent / "tiny_trainers"
os.environ["nnUNet_extTrainer"] += os.pathsep + os.fspath(TINY_TRAINERS)

PHANTOM_DATASET_ID = 901
PHANTOM_PATIENTS = 10
PHANTOM_SEED = 0


#: the test files that train or start nnU-Net subprocesses, heaviest first (242 to 46 s each in a full run
#: on the 2-core CPU with a training beside, 2026-12-04): collected first, so that with the Makefile's
#: ``--dist loadfile --no-loadscope-reorder`` the two xdist workers take the long files while the short ones
#: fill the end, and finish together (longest first). xdist's default orders files by their NUMBER of tests,
#: which put the few-test end-to-end files last: one worker ran alone for the last 105 s of that run.
HEAVY_FILES_FIRST = (
    "test_reproduce_e2e.py", "test_demo.py", "test_plans.py", "test_prediction_folds.py", "test_pretraining_ddp.py",
    "test_finetuning.py", "test_postprocessing_e2e.py", "test_semi_supervised.py", "test_pretraining.py",
    "test_folder_e2e.py", "test_pretraining_fp16.py", "test_baseline_pretraining.py",
    "test_instance_norm_configuration.py", "test_sunnybrook.py", "test_conversion.py",
)


def pytest_collection_modifyitems(config, items):
    """Heavy files first (:data:`HEAVY_FILES_FIRST`); a stable sort keeps every file's own test order and the
    other files in pytest's order."""
    rank = {name: i for i, name in enumerate(HEAVY_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)


@pytest.fixture(scope="session")
def session_root() -> Path:
    return _SESSION_ROOT


@pytest.fixture(scope="session")
def phantom_acdc(tmp_path_factory):
    """A phantom in the ACDC release layout: (root folder, list of per-patient metadata)."""
    from nnunetv2_glrp.conversion.phantom import make_phantom

    root = tmp_path_factory.mktemp("phantom_acdc")
    meta = make_phantom(root, n_patients=PHANTOM_PATIENTS, seed=PHANTOM_SEED)
    return root, meta


@pytest.fixture(scope="session")
def phantom_raw_dataset(phantom_acdc) -> Path:
    """The phantom converted to nnUNet_raw/Dataset901_ACDC (default 7:1:2 split, seed 0)."""
    from nnunetv2_glrp.conversion import convert_acdc

    root, _ = phantom_acdc
    return convert_acdc(root, PHANTOM_DATASET_ID, split="7:1:2", seed=PHANTOM_SEED)


@pytest.fixture(scope="session")
def phantom_preprocessed(phantom_raw_dataset) -> str:
    """Dataset901 planned, preprocessed with the small CPU plan (labeled + unlabeled), splits written.

    Returns the name of the configuration (``paper_unet_cpu``)."""
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    return prepare_dataset(PHANTOM_DATASET_ID, overlay="paper_unet_cpu", num_processes=1)


@pytest.fixture(scope="session")
def phantom_preprocessed_nnunet(phantom_preprocessed) -> str:
    """The same Dataset901 also prepared with ``nnunet_cpu`` (nnU-Net's InstanceNorm + LeakyReLU design at
    CPU size) beside ``paper_unet_cpu`` (BatchNorm + ReLU). Returns ``nnunet_cpu``."""
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    return prepare_dataset(PHANTOM_DATASET_ID, overlay="nnunet_cpu", num_processes=1)
