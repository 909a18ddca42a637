"""The run engine trains a model folder once at a time, also when an earlier engine was killed mid-training.

``kill ENGINE_PID`` stops the engine but not its ``nnUNetv2_train`` child; a rerun must then refuse the folder that
child is still writing instead of starting a second training into it (tests with a fake ``nnUNetv2_train``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from nnunetv2_glrp.reproduction import training
from nnunetv2_glrp.reproduction.training import LOCK_FILE, Setting, Training, train

FAKE_TRAIN = """\
import json, os, pathlib, sys, time
folder = pathlib.Path(os.environ["FAKE_FOLDER"])
gate = pathlib.Path(os.environ["FAKE_GATE"])
deadline = time.time() + 30
while not gate.exists():  # a training that runs until the test opens the gate
    if time.time() > deadline:
        sys.exit(3)
    time.sleep(0.05)
folder.mkdir(parents=True, exist_ok=True)
(folder / "glrp_finetuning.json").write_text(json.dumps({"seed": int(os.environ["GLRP_SEED"])}))
(folder / "checkpoint_final.pth").write_bytes(b"fake")
"""

ENGINE = """\
import sys
from pathlib import Path
import nnunetv2_glrp.environment as environment
environment.nnunet_command = lambda name: sys.argv[1]
from nnunetv2_glrp.reproduction.training import Setting, Training, train
base = Path(sys.argv[2])
setting = Setting("1", "Dataset001_X", "2d", "nnUNetPlans", "cpu", "nnunet", "cpu", base / "results", base, base / "out")
train(setting, Training("RandomInitTrainer", "RandomInitTrainer_k2_cpu", 0, 0))
"""


def _wait_for(condition, seconds=60.0, what="condition"):
    deadline = time.time() + seconds
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_training_left_by_a_killed_engine_keeps_its_folder_locked(tmp_path, monkeypatch):
    fake = tmp_path / "nnUNetv2_train"
    fake.write_text(f"#!{sys.executable}\n" + FAKE_TRAIN)
    fake.chmod(0o755)
    setting = Setting("1", "Dataset001_X", "2d", "nnUNetPlans", "cpu", "nnunet", "cpu", tmp_path / "results",
                      tmp_path, tmp_path / "out")
    t = Training("RandomInitTrainer", "RandomInitTrainer_k2_cpu", 0, 0)
    folder = setting.model_folder(t.family, t.trainer, t.fold, t.seed)
    gate = tmp_path / "gate"
    monkeypatch.setenv("FAKE_FOLDER", os.fspath(folder))
    monkeypatch.setenv("FAKE_GATE", os.fspath(gate))
    monkeypatch.setattr("nnunetv2_glrp.environment.nnunet_command", lambda name: os.fspath(fake))

    engine = subprocess.Popen([sys.executable, "-c", ENGINE, os.fspath(fake), os.fspath(tmp_path)])
    lock = folder / LOCK_FILE
    orphan = None
    try:
        def locked():
            assert engine.poll() is None, f"the engine exited early (code {engine.returncode})"
            return lock.is_file() and "nnUNetv2_train pid" in lock.read_text()

        _wait_for(locked, what="the engine's lock")
        orphan = int(lock.read_text().split("nnUNetv2_train pid ")[1].split()[0])
        engine.send_signal(signal.SIGKILL)
        engine.wait(timeout=30)
        assert _pid_alive(orphan), "the fake training should outlive its engine"

        # a second engine refuses the folder while the orphaned training runs (it would otherwise start a second
        # training, which here fails after 30 s with exit 3 instead of this error)
        with pytest.raises(RuntimeError, match="being trained by another process") as refused:
            train(setting, t)
        assert os.fspath(folder) in str(refused.value) and f"pid {orphan}" in str(refused.value)
        assert not (folder / "checkpoint_final.pth").exists()

        gate.touch()  # the orphan finishes; its lock goes with it
        _wait_for(lambda: not _pid_alive(orphan), what="the orphaned training to end")
        _wait_for(lambda: (folder / "checkpoint_final.pth").is_file(), what="the orphan's checkpoint")
        assert training.is_trained(setting, t)
        with training.training_lock(folder, "after the orphan"):  # free again
            pass
        # an ordinary training takes and returns its own folder's lock
        other = Training("RandomInitTrainer", "RandomInitTrainer_k2_cpu", 1, 0)
        monkeypatch.setenv("FAKE_FOLDER", os.fspath(setting.model_folder(other.family, other.trainer, 1, 0)))
        assert train(setting, other) >= 0 and training.is_trained(setting, other)
    finally:
        gate.touch()
        if engine.poll() is None:
            engine.kill()
        if orphan is not None and _pid_alive(orphan):
            os.kill(orphan, signal.SIGKILL)


def test_the_lock_is_released_when_the_training_ends_and_refuses_while_held(tmp_path):
    folder = tmp_path / "fold_0"
    with training.training_lock(folder, "first") as fd:
        assert fd >= 0
        with pytest.raises(RuntimeError, match=r"second: .*fold_0 is being trained by another process"):
            with training.training_lock(folder, "second"):
                pass
    with training.training_lock(folder, "third"):  # released by closing, not left behind
        pass
