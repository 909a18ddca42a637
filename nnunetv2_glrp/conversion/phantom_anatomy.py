"""What the ``realistic`` phantom adds to the heart: look-alikes around it, inside it, and above the base.

The ``easy`` phantom (``phantom.py``) is a bright heart in textured noise: any method reaches a Dice of
about 0.87 at k = 2, so it cannot tell methods apart. Real short-axis cine MRI is hard where this
module makes the phantom hard, all of it deterministic per patient (drawn from the patient's own
generator after every number the easy phantom draws, so ``easy`` patients stay unchanged):

* Look-alikes around the heart, in the heart's frame (they rotate with it): the liver below the
  heart and the chest-wall muscle in front of the RV at myocardium-like intensity, the descending
  aorta behind the LV as a blood-bright disk, dark lungs on both sides.
* Above the base, 1 or 2 slices that carry NO label (ACDC labels only the ventricles): the left
  atrium and the aortic root and pulmonary trunk, blood-bright with myocardium-like walls, i.e.
  structures a network must learn not to call LV or RV.
* Inside the LV blood pool: two papillary muscles and a few trabeculae at myocardium intensity,
  labelled LV (as in ACDC, where the cavity label includes them).
* Per-patient blood/myocardium contrast drawn from a wide range (some patients low contrast).
* Through-slice partial volume: each slice is the mean of the anatomy rendered at three positions
  across the slice thickness, so the apex and the base blur into their neighbours; the label is
  the anatomy at the slice centre.
The heart's pose, size and slice count also vary more (``phantom._draw_meta``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: sub-slice offsets (in slice thicknesses) averaged for through-slice partial volume
PARTIAL_VOLUME_OFFSETS = (-1 / 3, 0.0, 1 / 3)


@dataclass(frozen=True)
class RealisticAnatomy:
    """Per-patient draws of the realistic phantom (intensities relative to the easy phantom's 0..1)."""

    blood: float
    myo: float
    liver: float
    chest_wall: float
    lung: float
    liver_centre: tuple[float, float]  # heart frame, mm
    liver_radii: tuple[float, float]
    aorta_centre: tuple[float, float]
    papillary_angles: tuple[float, float]  # radians, in the heart frame
    trabeculae: tuple[tuple[float, float, float], ...]  # (angle, radial fraction, radius mm)
    atrium_shift: tuple[float, float]
    slices_above_base: int


def draw_realistic_anatomy(rng: np.random.Generator) -> RealisticAnatomy:
    blood = float(rng.uniform(0.55, 0.95))
    myo = float(blood * rng.uniform(0.3, 0.6))  # contrast blood/myo from 1.7x to 3.3x
    pap = float(rng.uniform(0.3, 1.2))
    return RealisticAnatomy(
        blood=blood, myo=myo, liver=float(myo * rng.uniform(1.0, 1.5)), chest_wall=float(myo * rng.uniform(0.8, 1.2)),
        lung=float(rng.uniform(0.02, 0.08)),
        liver_centre=(float(rng.uniform(35.0, 55.0)), float(rng.uniform(45.0, 70.0))),
        liver_radii=(float(rng.uniform(45.0, 70.0)), float(rng.uniform(25.0, 40.0))),
        aorta_centre=(float(rng.uniform(25.0, 40.0)), float(rng.uniform(-45.0, -35.0))),
        papillary_angles=(pap, pap + float(rng.uniform(1.6, 2.4))),
        trabeculae=tuple((float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.6, 0.85)), float(rng.uniform(1.0, 2.2)))
                         for _ in range(int(rng.integers(2, 6)))),
        atrium_shift=(float(rng.uniform(5.0, 15.0)), float(rng.uniform(-10.0, 10.0))),
        slices_above_base=int(rng.integers(1, 3)),
    )


def _ellipse(xx: np.ndarray, yy: np.ndarray, centre: tuple[float, float], radii: tuple[float, float]) -> np.ndarray:
    return ((xx - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 <= 1.0


def paint_surroundings(tissue: np.ndarray, body: np.ndarray, xx: np.ndarray, yy: np.ndarray,
                       anatomy: RealisticAnatomy, heart_radius: float) -> np.ndarray:
    """Tissue of one slice with lungs, liver, chest wall and descending aorta painted in (heart frame xx, yy)."""
    out = tissue.copy()
    r = np.hypot(xx, yy)
    lungs = body & (r > heart_radius + 12.0) & (r < heart_radius + 60.0) & (np.abs(yy) < 55.0)
    out[lungs] = anatomy.lung
    out[body & _ellipse(xx, yy, anatomy.liver_centre, anatomy.liver_radii)] = anatomy.liver
    chest = body & (xx < -(heart_radius + 6.0)) & (xx > -(heart_radius + 16.0)) & (np.abs(yy) < 45.0)
    out[chest] = anatomy.chest_wall
    out[_ellipse(xx, yy, anatomy.aorta_centre, (11.0, 11.0))] = anatomy.blood
    return out


def paint_above_base(image: np.ndarray, xx: np.ndarray, yy: np.ndarray, anatomy: RealisticAnatomy,
                     depth: float, heart_radius: float) -> np.ndarray:
    """One slice above the base (depth 0 at the base, 1 one heart-radius above): atrium and great vessels.

    Blood-bright lumens with myocardium-like walls; nothing here is labelled."""
    out = image.copy()
    shrink = 1.0 - 0.3 * depth
    sx, sy = anatomy.atrium_shift
    structures = (  # (centre, lumen radius): left atrium, aortic root, pulmonary trunk
        ((sx + 0.2 * heart_radius, sy), 0.75 * heart_radius * shrink),
        ((-0.1 * heart_radius, -0.45 * heart_radius), 0.45 * heart_radius),
        ((-0.8 * heart_radius, -0.2 * heart_radius), 0.4 * heart_radius),
    )
    for centre, radius in structures:
        out[_ellipse(xx, yy, centre, (radius + 3.0, radius + 3.0))] = anatomy.myo
    for centre, radius in structures:
        out[_ellipse(xx, yy, centre, (radius, radius))] = anatomy.blood
    return out


def papillary_mask(xx: np.ndarray, yy: np.ndarray, r_lv: float, anatomy: RealisticAnatomy, u: float) -> np.ndarray:
    """Papillary muscles (mid-ventricle, fading towards base and apex) and trabeculae inside the LV."""
    mask = np.zeros(xx.shape, dtype=bool)
    strength = np.sin(np.pi * np.clip(u, 0.0, 1.0))  # 0 at base and apex, 1 mid-ventricle
    for angle in anatomy.papillary_angles:
        radius = 0.22 * r_lv * strength
        if radius >= 0.8:
            c = (0.62 * r_lv * np.cos(angle), 0.62 * r_lv * np.sin(angle))
            mask |= _ellipse(xx, yy, c, (radius, radius))
    for angle, frac, radius in anatomy.trabeculae:
        c = (frac * r_lv * np.cos(angle), frac * r_lv * np.sin(angle))
        mask |= _ellipse(xx, yy, c, (radius, radius))
    return mask
