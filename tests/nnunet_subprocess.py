"""Running nnU-Net's and the plugin's commands as subprocesses in tests: one environment, one error message."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import nnunetv2_glrp


def nnunet_env(**extra: str) -> dict[str, str]:
    """This process's environment with the package importable (``make install`` installs it editable, a
    clean clone may not have it) and nnU-Net kept to one process and thread; ``extra`` added last."""
    env = dict(os.environ)
    repo = os.fspath(Path(nnunetv2_glrp.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    env.update(nnUNet_n_proc_DA="0", nnUNet_def_n_proc="1", OMP_NUM_THREADS="1", nnUNet_compile="false")
    env.update(extra)
    return env


def run_checked(args: list[str], timeout: int = 600, **extra_env: str) -> str:
    """Run ``args`` in :func:`nnunet_env`; AssertionError with the output's tails when it fails; its
    stdout + stderr (decoded as UTF-8 whatever the locale: nnU-Net's progress bars are not ASCII)."""
    out = subprocess.run(args, env=nnunet_env(**extra_env), capture_output=True, encoding="utf-8",
                         errors="replace", timeout=timeout)
    if out.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return out.stdout + out.stderr
