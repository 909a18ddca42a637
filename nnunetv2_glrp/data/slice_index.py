"""Index of every pretraining slice: labeled cases and unlabeled frames of TRAIN and VAL patients only.

Reads ``glrp_split.json`` (written by the converter, copied into the preprocessed dataset folder) to
map each preprocessed case to its patient and set; a case of a test patient is never indexed, and a
case absent from the split is an error (we cannot prove it is not a test case). Labels are never read:
only the image array's shape and the ``.pkl`` properties are opened here.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from nnunetv2_glrp.data.positions import slice_positions
from nnunetv2_glrp.data.reading import image_shape, list_identifiers, read_properties

logger = logging.getLogger(__name__)

PRETRAINING_SETS = ("train", "val")


@dataclass(frozen=True)
class SliceRecord:
    folder: str  # preprocessed folder of the case (str: cheap to pickle into workers)
    case: str
    slice_index: int  # index along axis 0 of the preprocessed array
    n: int  # 1-based position from the base in the original stack
    m: int  # number of slices of the original stack
    patient: str
    kind: str  # "labeled" | "unlabeled"

    @property
    def position(self) -> float:
        return self.n / self.m


def load_split(preprocessed_dataset_folder: Path) -> dict:
    path = Path(preprocessed_dataset_folder) / "glrp_split.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the converter's split (glrp_split.json) must be copied into the "
                                "preprocessed dataset folder (nnUNetv2_glrp prepare does it)")
    split = json.loads(path.read_text())
    for key in ("train", "val", "test", "cases"):
        if key not in split:
            raise ValueError(f"{path}: missing key {key!r}")
    return split


def build_slice_index(folders: Iterable[Path], split: dict, sets: tuple[str, ...] = PRETRAINING_SETS) -> list[SliceRecord]:
    """Every slice of every case in ``folders`` whose patient is in ``sets``; folders that do not exist are
    skipped with a log line (a dataset without 4D cine files has no unlabeled frames)."""
    allowed_patients = {p for s in sets for p in split[s]}
    test_patients = set(split["test"])
    records: list[SliceRecord] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            logger.info("no folder %s: skipped", folder)
            continue
        for case in list_identifiers(folder):
            info = split["cases"].get(case)
            if info is None:
                raise ValueError(f"case {case} in {folder} is not listed in glrp_split.json: cannot tell whether it "
                                 "belongs to a test patient")
            patient = info["patient"]
            if info.get("set") not in sets or patient not in allowed_patients:
                continue
            if patient in test_patients:
                raise ValueError(f"case {case}: patient {patient} is listed both as {info.get('set')} and test")
            props = read_properties(folder, case)
            for k, (n, m) in enumerate(slice_positions(props, image_shape(folder, case)[1], case)):
                records.append(SliceRecord(str(folder), case, k, n, m, patient, info.get("kind", "labeled")))
    if not records:
        raise ValueError(f"no pretraining slices of sets {sets} found in {[str(f) for f in folders]}")
    bad = {r.patient for r in records} & test_patients
    assert not bad, f"test patients {sorted(bad)} in the pretraining index"
    return records
