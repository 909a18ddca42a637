"""A prepared synthetic dataset in one call: phantom -> ACDC conversion -> planning + overlay + preprocessing.

What the demo and the few-label benchmark start from. Each step is skipped when its output exists
(the phantom has a ``DONE`` marker, a converted dataset of the id is reused, ``prepare_dataset`` skips
what is current), so a killed call resumes.
"""

from __future__ import annotations

import os
from pathlib import Path


def prepare_phantom_dataset(phantom_root: Path, dataset_id: int, patients: int, seed: int = 0, frames: int = 8,
                            difficulty: str = "realistic", split: str = "7:1:2", overlay: str = "nnunet_cpu",
                            num_processes: int = 2) -> tuple[Path, str]:
    """(raw dataset folder, configuration name) of a phantom of ``patients`` patients converted to
    ``Dataset{dataset_id}`` in ``$nnUNet_raw`` and prepared with ``overlay``; ``seed`` seeds the phantom and
    the patient split."""
    from nnunetv2_glrp.conversion import convert_acdc
    from nnunetv2_glrp.conversion.phantom import make_phantom
    from nnunetv2_glrp.preparation.pipeline import prepare_dataset

    if not (phantom_root / "DONE").exists():
        make_phantom(phantom_root, n_patients=patients, seed=seed, n_frames=frames, difficulty=difficulty,
                     overwrite=True)
        (phantom_root / "DONE").write_text("ok\n")
    existing = sorted(Path(os.environ["nnUNet_raw"]).glob(f"Dataset{dataset_id:03d}_*"))
    raw = existing[0] if existing else convert_acdc(phantom_root, dataset_id, split=split, seed=seed)
    return raw, prepare_dataset(dataset_id, overlay=overlay, num_processes=num_processes)
