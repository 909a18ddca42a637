"""Clinical indices of the heart from ED and ES label maps: volumes, ejection fraction, myocardial mass.

Per patient (case ids ``<patient>_ED`` and ``<patient>_ES``, as the converters name cases), in the units
cardiologists read:

- volume of a structure (mL) = voxel count x voxel volume (mm^3) / 1000;
- EDV, ESV (mL): the LV / RV cavity volume at ED / ES; SV = EDV - ESV (mL); EF = 100 x SV / EDV (%),
  undefined (NaN) when EDV is 0;
- LV myocardial mass (g) = myocardium volume at ED (mL) x 1.05 g/mL.

Which indices exist depends on the labels (names as in ``dataset.json``): ``LV`` gives the LV indices,
``RV`` the RV ones, ``MYO`` the mass; a dataset with LV + MYO only gets the LV indices and the mass.
A patient without both an ED and an ES case gets no indices (it is listed with the reason); a case id
without an ``_ED``/``_ES`` suffix is not a phase of a patient and is listed too.

Pure functions: volumes in, rows out; :mod:`nnunetv2_glrp.evaluate` reads the files and writes the CSV.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np

#: density of myocardial tissue, g/mL
MYOCARDIAL_DENSITY_G_PER_ML = 1.05
PHASES = ("ED", "ES")
#: every quantity, in the order of ``clinical.csv``; units in the name
QUANTITIES = ("LV_EDV_ml", "LV_ESV_ml", "LV_SV_ml", "LV_EF_pct", "RV_EDV_ml", "RV_ESV_ml", "RV_SV_ml", "RV_EF_pct",
              "LV_mass_g")
CSV_COLUMNS = ("patient", "quantity", "reference", "prediction", "difference")
#: the label names that the indices need
CAVITIES = ("LV", "RV")
MYOCARDIUM = "MYO"


def split_case(case: str) -> tuple[str, str] | None:
    """``("patient001", "ED")`` for ``"patient001_ED"``; None when the id ends in neither ``_ED`` nor ``_ES``."""
    for phase in PHASES:
        if case.endswith(f"_{phase}") and len(case) > len(phase) + 1:
            return case[: -len(phase) - 1], phase
    return None


def voxel_volume_mm3(spacing: Sequence[float]) -> float:
    """Volume of one voxel (mm^3) from the spacing (mm) along each axis."""
    return float(math.prod(float(s) for s in spacing))


def structure_volumes_ml(label_map: np.ndarray, spacing: Sequence[float], labels: Mapping[str, int]) -> dict[str, float]:
    """{structure name: volume in mL} of every label: voxel count x voxel volume (mm^3) / 1000."""
    voxel = voxel_volume_mm3(spacing)
    array = np.asarray(label_map)
    return {name: float(np.count_nonzero(array == value)) * voxel / 1000.0 for name, value in labels.items()}


def available_quantities(labels: Mapping[str, int]) -> tuple[str, ...]:
    """The quantities that ``labels`` allow, in :data:`QUANTITIES` order (LV/RV indices need that cavity's
    label, the mass needs ``MYO``)."""
    return tuple(q for q in QUANTITIES
                 if (q == "LV_mass_g" and MYOCARDIUM in labels) or (q != "LV_mass_g" and q[:2] in labels))


def patient_indices(ed: Mapping[str, float], es: Mapping[str, float], labels: Mapping[str, int]) -> dict[str, float]:
    """{quantity: value} of one patient from its ED and ES structure volumes (mL); see the module docstring."""
    out: dict[str, float] = {}
    for cavity in CAVITIES:
        if cavity not in labels:
            continue
        edv, esv = float(ed[cavity]), float(es[cavity])
        sv = edv - esv
        out[f"{cavity}_EDV_ml"], out[f"{cavity}_ESV_ml"], out[f"{cavity}_SV_ml"] = edv, esv, sv
        out[f"{cavity}_EF_pct"] = 100.0 * sv / edv if edv > 0 else math.nan
    if MYOCARDIUM in labels:
        out["LV_mass_g"] = float(ed[MYOCARDIUM]) * MYOCARDIAL_DENSITY_G_PER_ML
    return {q: out[q] for q in QUANTITIES if q in out}


def pair_phases(cases: Sequence[str]) -> tuple[dict[str, tuple[str, str]], dict[str, str]]:
    """({patient: (ED case, ES case)}, {patient or case: why it has no indices}) of ``cases``."""
    phases: dict[str, dict[str, str]] = {}
    skipped: dict[str, str] = {}
    for case in sorted(cases):
        parsed = split_case(case)
        if parsed is None:
            skipped[case] = "case id does not end in _ED or _ES: not a phase of a patient"
            continue
        patient, phase = parsed
        phases.setdefault(patient, {})[phase] = case
    pairs = {}
    for patient, found in sorted(phases.items()):
        missing = [p for p in PHASES if p not in found]
        if missing:
            have = ", ".join(found.values())
            skipped[patient] = f"no {missing[0]} case (only {have}): volumes need both ED and ES"
        else:
            pairs[patient] = (found["ED"], found["ES"])
    return pairs, skipped


def clinical_rows(reference: Mapping[str, Mapping[str, float]], prediction: Mapping[str, Mapping[str, float]],
                  labels: Mapping[str, int]) -> tuple[list[dict], dict[str, str]]:
    """Rows of ``clinical.csv`` (one per patient and quantity) and the skipped patients with the reason.

    ``reference`` / ``prediction``: {case id: {structure: volume mL}} (:func:`structure_volumes_ml`), the same
    cases in both. ``difference`` = prediction - reference (NaN when either is NaN)."""
    if set(reference) != set(prediction):
        raise ValueError(f"reference and prediction volumes cover different cases: "
                         f"{sorted(set(reference) ^ set(prediction))[:5]}")
    pairs, skipped = pair_phases(list(reference))
    rows = []
    for patient, (ed, es) in pairs.items():
        ref = patient_indices(reference[ed], reference[es], labels)
        pred = patient_indices(prediction[ed], prediction[es], labels)
        for quantity in ref:
            r, p = float(ref[quantity]), float(pred[quantity])
            rows.append({"patient": patient, "quantity": quantity, "reference": r, "prediction": p,
                         "difference": p - r})
    return rows, skipped
