"""nnU-Net environment variables: defaults for the three data folders and ``nnUNet_extTrainer``.

nnU-Net reads ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` once, when
``nnunetv2.paths`` is first imported. Call :func:`configure_nnunet_environment` before that import
(the CLI does it first thing). Variables the user has set are never overwritten; unset ones default
to ``<base>/nnUNet_raw`` etc., where ``base`` is ``$GLRP_DATA`` or ``./nnunet_data``.
``nnUNet_extTrainer`` gets this repository's ``trainers/`` folder prepended when it is not already
listed, so ``nnUNetv2_train -tr GLRPTrainer_k6`` finds our trainers (:func:`shipped_folder`: beside
the package in a checkout, inside it in a wheel). ``OMP_WAIT_POLICY`` defaults to ``PASSIVE`` (see
:data:`THREAD_DEFAULTS`).
"""

from __future__ import annotations

import os
from pathlib import Path

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
#: defaults for the processes this package starts (nnUNetv2_train/-predict, data workers), unless set.
#: ``nnUNetv2_train -device cpu`` gives torch one OpenMP thread per core, and OpenMP's default lets idle
#: threads spin: with a second training, a data worker or a test beside it, the spinning threads steal the
#: cores. Measured on the 2-core CPU machine with another 2-thread process running: a 16 x 32 x 64 x 64
#: conv took 34-107 ms with spinning, 14 ms with PASSIVE (the same as on an idle machine).
THREAD_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}


#: where a wheel (``pip install .``) carries the repository's ``plans/`` and ``trainers/`` (see setup.py)
SHIPPED = "_shipped"
_MARKERS = {"trainers": "glrp_trainers.py", "plans": "paper_unet.json"}


def shipped_folder(name: str, must_exist: bool = True) -> Path:
    """The repository's ``plans/`` or ``trainers/`` folder: inside the package (``nnunetv2_glrp/_shipped/<name>``)
    when installed from a wheel, beside it in a checkout (editable install)."""
    package = Path(__file__).resolve().parent
    candidates = (package / SHIPPED / name, package.parent / name)
    for folder in candidates:
        if (folder / _MARKERS[name]).is_file():
            return folder
    if must_exist:
        raise FileNotFoundError(f"{name} folder not found at {candidates[0]} (wheel) or {candidates[1]} (checkout): "
                                "reinstall nnunetv2_glrp (pip install . or pip install -e . from a checkout)")
    return candidates[1]


def trainers_folder() -> Path:
    """The folder of the trainer classes that ``nnUNet_extTrainer`` points at."""
    return shipped_folder("trainers")


def configure_nnunet_environment(base: str | os.PathLike | None = None, environ=None,
                                 create: bool = True) -> dict[str, str]:
    """Fill in unset nnU-Net variables (and :data:`THREAD_DEFAULTS`) in ``environ`` (default ``os.environ``)
    and return the nnU-Net ones.

    ``base`` overrides ``$GLRP_DATA``/``./nnunet_data`` as the parent of unset data folders, which
    are created when ``create`` (commands that never touch them pass False).
    """
    env = os.environ if environ is None else environ
    for name, value in THREAD_DEFAULTS.items():
        env.setdefault(name, value)
    root = Path(base if base is not None else env.get("GLRP_DATA", "nnunet_data")).resolve()
    for name in NNUNET_FOLDERS:
        if not env.get(name):
            env[name] = os.fspath(root / name)
        if create:
            try:
                Path(env[name]).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise OSError(f"cannot create the {name} folder {env[name]}: {exc.strerror or exc}") from None
    ours = os.fspath(trainers_folder())
    listed = [p for p in env.get("nnUNet_extTrainer", "").split(os.pathsep) if p]
    if ours not in listed:
        env["nnUNet_extTrainer"] = os.pathsep.join([ours, *listed])
    return {k: env[k] for k in (*NNUNET_FOLDERS, "nnUNet_extTrainer")}


def nnunet_command(name: str) -> str:
    """Path of an nnU-Net console script (``nnUNetv2_train`` ...) of this interpreter's environment."""
    import shutil
    import sys

    candidate = Path(sys.executable).parent / name
    if candidate.exists():
        return os.fspath(candidate)
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"nnU-Net command {name!r} not found beside {sys.executable} or on PATH")
    return found
