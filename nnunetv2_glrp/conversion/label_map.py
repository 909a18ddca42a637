"""A dataset's label set given by the user (``convert-folder --labels``) and the remapping of source values.

``--labels "background=0,LV=1,MYO=2"``: comma-separated ``name=value`` pairs naming every value that
may occur in the source label files. A name may take several source values joined by ``+``
(``background=0+1`` folds the source's label 1 into background, e.g. to drop ACDC's RV). ``background``
is required; a value may belong to one name only; names are letters, digits and ``_``.

The dataset's own numbering is consecutive in the order given: background 0, then 1, 2, ... for
the other names (``"background=0,LV=3,MYO=2"`` writes LV as 1, MYO as 2). :meth:`LabelMap.remap`
turns a source label array into the dataset's numbering and rejects a value that ``--labels`` does
not name (the error names the file and the values). The names LV, MYO and RV (any case) tell the
slice-order rule and the clinical indices which structure is which; other names are kept but read
by neither.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NAME_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
BACKGROUND = "background"


@dataclass(frozen=True)
class LabelMap:
    """``names[i]`` is written as dataset value ``i`` (``names[0]`` = background); ``sources[i]`` its source values."""

    names: tuple[str, ...]
    sources: tuple[tuple[int, ...], ...]

    def dataset_labels(self) -> dict[str, int]:
        """``dataset.json``'s ``labels``: {name: dataset value}."""
        return {name: i for i, name in enumerate(self.names)}

    def values_of(self, *structures: str) -> tuple[int, ...]:
        """Dataset values of the named structures present (case-insensitive), e.g. ``values_of("LV", "MYO")``."""
        wanted = {s.lower() for s in structures}
        return tuple(i for i, name in enumerate(self.names) if name.lower() in wanted)

    def remap(self, array: np.ndarray, patient: str, path: Path) -> np.ndarray:
        """Source label array -> uint8 array in the dataset's numbering; ValueError naming ``path`` on an
        unnamed value or a non-integer value."""
        values = np.unique(array)
        known = {v: i for i, vs in enumerate(self.sources) for v in vs}
        bad = [v for v in values.tolist() if float(v) != int(v) or int(v) not in known]
        if bad:
            shown = ", ".join(f"{v:g}" for v in bad[:10])
            raise ValueError(f"{patient}: {Path(path).name} has label values not named in --labels "
                             f"({self.describe()}): {shown}")
        out = np.zeros(array.shape, dtype=np.uint8)
        for value in values.tolist():
            out[array == value] = known[int(value)]
        return out

    def describe(self) -> str:
        return ",".join(f"{n}={'+'.join(map(str, s))}" for n, s in zip(self.names, self.sources))


def parse_labels(text: str) -> LabelMap:
    """``"background=0,LV=1,MYO=2"`` -> :class:`LabelMap`; ValueError saying what is wrong."""
    entries: dict[str, tuple[int, ...]] = {}
    owner: dict[int, str] = {}
    for part in (p.strip() for p in str(text).split(",")):
        name, sep, values = part.partition("=")
        name = name.strip()
        if not sep or not NAME_PATTERN.match(name):
            raise ValueError(f"--labels: expected 'name=value' with a name of letters, digits and _, got {part!r} "
                             f"(example: 'background=0,LV=1,MYO=2')")
        if name.lower() in {n.lower() for n in entries}:
            raise ValueError(f"--labels: {name!r} is given twice")
        try:
            numbers = tuple(int(v) for v in values.split("+"))
        except ValueError:
            raise ValueError(f"--labels: {part!r}: values must be non-negative integers joined by '+'") from None
        for v in numbers:
            if v < 0:
                raise ValueError(f"--labels: {part!r}: values must be non-negative")
            if v in owner:
                raise ValueError(f"--labels: source value {v} is given to both {owner[v]!r} and {name!r}")
            owner[v] = name
        entries[name] = numbers
    if BACKGROUND not in entries:
        raise ValueError(f"--labels must name 'background' (e.g. 'background=0,LV=1,MYO=2'), got {text!r}")
    if len(entries) < 2:
        raise ValueError(f"--labels names no structure besides background: {text!r}")
    if len(entries) > 255:
        raise ValueError("--labels: at most 255 structures")
    names = (BACKGROUND, *(n for n in entries if n != BACKGROUND))
    return LabelMap(names, tuple(entries[n] for n in names))


#: M&Ms source numbering (1 LV, 2 MYO, 3 RV) written in ACDC's numbering (1 RV, 2 MYO, 3 LV)
MNMS_LABELS = LabelMap(("background", "RV", "MYO", "LV"), ((0,), (3,), (2,), (1,)))
