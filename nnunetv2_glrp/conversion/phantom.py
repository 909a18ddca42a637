"""A synthetic short-axis cine phantom written in the exact ACDC release layout.

Each patient is a stack of m short-axis slices (6-18, 5-10 mm apart, base first in anatomy) with a
left-ventricular blood pool (label 3), a myocardial ring around it (2) and a right-ventricular
crescent (1) wrapped around the septum. All three shrink from the base to the apex and the RV is
absent in the apical quarter of the stack. Over the cine frames the heart contracts smoothly from
ED to ES and relaxes back (half-cosine systole, half-cosine diastole). Surrounding tissue is a body
ellipse filled with band-passed noise texture (two scales) plus a few bright blobs, so that patch
SSIM carries information; the image gets a smooth multiplicative bias field and Rician-like noise.

Choices where ACDC gives no rule: the pose (rotation, translation, scale of the heart) is drawn
once per patient and shared by all slices and frames; the texture is fixed per slice, the noise is
drawn per frame; intensities are stored as int16 (0..~1200) like many ACDC files; the direction is
the identity and the origin is centred in-plane. Patients stored apex-first (``apex_first``) have
their arrays reversed along z with unchanged origin/direction, i.e. what a converter sees when a
scanner stored the stack the other way round; one patient in five is apex-first
(``(patient_number + seed) % 5 == 2``), deterministic so that every 5 consecutive patients contain
one. Each patient draws from
``np.random.default_rng([seed, patient_number])``, so a patient's data do not depend on how many
patients are generated or on ``first_patient``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter
from nnunetv2_glrp.progress import tqdm

from nnunetv2_glrp.atomic_files import replacing_folder
from nnunetv2_glrp.conversion.phantom_anatomy import (PARTIAL_VOLUME_OFFSETS, draw_realistic_anatomy, paint_above_base,
                                                      paint_surroundings, papillary_mask)

logger = logging.getLogger(__name__)

GROUPS = ("DCM", "HCM", "MINF", "NOR", "RV")
TRAINING_FRACTION = 2 / 3  # ACDC: 100 training / 50 testing
DIFFICULTIES = ("easy", "realistic")


@dataclass(frozen=True)
class PhantomPatient:
    """What was drawn for one phantom patient (``spacing`` is (x, y, z) in mm, frames 1-based)."""

    patient_id: str
    subset: str  # "training" | "testing"
    n_slices: int
    n_frames: int
    in_plane_size: int
    spacing: tuple[float, float, float]
    ed_frame: int
    es_frame: int
    apex_first: bool
    group: str
    rotation_deg: float
    scale: float
    translation_mm: tuple[float, float]
    difficulty: str = "easy"
    slices_above_base: int = 0  # realistic: unlabelled slices above the base (atria, great vessels)

    @property
    def folder(self) -> str:
        return f"{self.subset}/{self.patient_id}"


def _cycle(frame: int, ed: int, es: int, n_frames: int) -> float:
    """Contraction state in [0, 1]: 0 at ED, 1 at ES, smooth half-cosines in between (cyclic)."""
    t = (frame - ed) % n_frames
    systole = (es - ed) % n_frames
    if t <= systole:
        return 0.5 * (1.0 - np.cos(np.pi * t / systole))
    return 0.5 * (1.0 + np.cos(np.pi * (t - systole) / (n_frames - systole)))


def _lv_radius(u: float, c: float, shape_params: dict) -> float:
    return shape_params["r_lv"] * (1.0 - 0.72 * u ** 1.6) * (1.0 - 0.33 * c)


def _labels_for_slice(u: float, c: float, xx: np.ndarray, yy: np.ndarray, shape_params: dict) -> np.ndarray:
    """Label map of one slice at stack position u (0 base, 1 apex) and contraction state c.

    xx, yy: heart-frame coordinates in mm (already rotated/translated/scaled)."""
    taper = 1.0 - 0.72 * u ** 1.6
    r_lv = _lv_radius(u, c, shape_params)
    wall = shape_params["wall"] * (0.8 + 0.2 * taper) * (1.0 + 0.45 * c)
    ecc = shape_params["ecc"]
    r_lv_ell = np.sqrt((xx / ecc) ** 2 + (yy * ecc) ** 2)
    labels = np.zeros(xx.shape, dtype=np.uint8)
    r_out = r_lv + wall
    labels[r_lv_ell <= r_out] = 2
    labels[r_lv_ell <= r_lv] = 3
    if u < 0.72:  # RV present in the basal three quarters, shrinking towards the apex
        rv_taper = 1.0 - u / 0.72 * 0.6
        cx, cy = -r_out * 0.55, 0.0
        a = r_out * (0.55 + 1.0 * rv_taper) * (1.0 - 0.15 * c)  # depth away from the septum
        b = r_out * (0.7 + 0.75 * rv_taper) * (1.0 - 0.1 * c)  # extent along the septum
        inside_rv = ((xx - cx) / a) ** 2 + ((yy - cy) / b) ** 2 <= 1.0
        outside_lv = r_lv_ell > r_out + 2.5  # septal/free-wall gap of 2.5 mm
        labels[inside_rv & outside_lv & (labels == 0)] = 1
    return labels


def _patient_volume_series(rng: np.random.Generator, meta: PhantomPatient) -> tuple[np.ndarray, np.ndarray]:
    """(images [T, Z, Y, X] int16, labels [T, Z, Y, X] uint8), slice 0 = base."""
    n, m, T = meta.in_plane_size, meta.n_slices, meta.n_frames
    sx, sy, _ = meta.spacing
    # pixel centres in mm, centred in-plane
    ys = (np.arange(n) - (n - 1) / 2) * sy
    xs = (np.arange(n) - (n - 1) / 2) * sx
    Y, X = np.meshgrid(ys, xs, indexing="ij")
    th = np.deg2rad(meta.rotation_deg)
    tx, ty = meta.translation_mm
    Xr = (np.cos(th) * (X - tx) + np.sin(th) * (Y - ty)) / meta.scale
    Yr = (-np.sin(th) * (X - tx) + np.cos(th) * (Y - ty)) / meta.scale
    shape_params = {"r_lv": rng.uniform(19.0, 26.0), "wall": rng.uniform(6.0, 10.0), "ecc": rng.uniform(0.9, 1.1)}

    # static anatomy: body ellipse with textured tissue and a few bright organs, per slice
    body = (X / (n * sx * rng.uniform(0.42, 0.5))) ** 2 + (Y / (n * sy * rng.uniform(0.34, 0.42))) ** 2 <= 1.0
    tissue = np.empty((m, n, n), dtype=np.float32)
    for z in range(m):
        coarse = gaussian_filter(rng.standard_normal((n, n)), sigma=6.0 / sx)
        fine = gaussian_filter(rng.standard_normal((n, n)), sigma=1.5 / sx)
        tex = 0.4 + 1.6 * coarse + 0.35 * fine
        for _ in range(3):  # bright organs (liver/fat-like blobs)
            bx, by = rng.uniform(-0.35, 0.35, size=2) * n * sx
            br = rng.uniform(8.0, 20.0)
            tex = tex + 0.35 * (((X - bx) ** 2 + (Y - by) ** 2) <= br ** 2)
        tissue[z] = np.where(body, np.clip(tex, 0.05, 1.0), 0.02)
    yy_, xx_ = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    coeffs = rng.uniform(-0.25, 0.25, size=5)
    bias = np.exp(coeffs[0] * xx_ + coeffs[1] * yy_ + coeffs[2] * xx_ * yy_ + coeffs[3] * xx_ ** 2 + coeffs[4] * yy_ ** 2)
    blood, myo, noise_sigma = rng.uniform(0.8, 0.95), rng.uniform(0.18, 0.3), rng.uniform(0.02, 0.05)
    render = _easy_renderer(tissue, blood, myo, Xr, Yr, shape_params)
    if meta.difficulty == "realistic":
        extra = np.random.default_rng(rng.integers(2 ** 63))
        anatomy = draw_realistic_anatomy(extra)
        noise_sigma = extra.uniform(0.03, 0.07)
        bias = bias ** 1.6  # a stronger coil shading
        render = _realistic_renderer(tissue, body, anatomy, Xr, Yr, shape_params, meta)

    images = np.empty((T, m, n, n), dtype=np.int16)
    labels = np.empty((T, m, n, n), dtype=np.uint8)
    for t in range(T):
        c = _cycle(t + 1, meta.ed_frame, meta.es_frame, T)
        for z in range(m):
            img, lab = render(z, c)
            img = gaussian_filter(img, sigma=0.6) * bias
            img = np.hypot(img + noise_sigma * rng.standard_normal(img.shape), noise_sigma * rng.standard_normal(img.shape))
            images[t, z] = np.round(np.clip(img, 0, 2.5) * 800).astype(np.int16)
            labels[t, z] = lab
    return images, labels


def _easy_renderer(tissue, blood, myo, Xr, Yr, shape_params):
    m = tissue.shape[0]

    def render(z: int, c: float) -> tuple[np.ndarray, np.ndarray]:
        lab = _labels_for_slice(z / (m - 1), c, Xr, Yr, shape_params)
        img = tissue[z].copy()
        img[lab == 2] = myo
        img[(lab == 1) | (lab == 3)] = blood
        return img, lab
    return render


def _realistic_renderer(tissue, body, anatomy, Xr, Yr, shape_params, meta):
    """Slice z -> (image averaged over PARTIAL_VOLUME_OFFSETS, labels at the slice centre)."""
    above = meta.slices_above_base
    span = max(1, meta.n_slices - above - 1)  # labelled slices from base (u = 0) to apex (u = 1)
    heart_radius = shape_params["r_lv"] + shape_params["wall"]
    surround = [paint_surroundings(tissue[z], body, Xr, Yr, anatomy, heart_radius) for z in range(tissue.shape[0])]

    def at(z: int, u: float, c: float) -> tuple[np.ndarray, np.ndarray]:
        if u < 0:  # above the base: atrium and great vessels, no label
            depth = min(1.0, -u * span / above)
            return paint_above_base(surround[z], Xr, Yr, anatomy, depth, heart_radius), np.zeros(Xr.shape, np.uint8)
        if u > 1:  # beyond the apex
            return surround[z].copy(), np.zeros(Xr.shape, np.uint8)
        lab = _labels_for_slice(u, c, Xr, Yr, shape_params)
        img = surround[z].copy()
        img[lab == 2] = anatomy.myo
        img[(lab == 1) | (lab == 3)] = anatomy.blood
        img[papillary_mask(Xr, Yr, _lv_radius(u, c, shape_params), anatomy, u) & (lab == 3)] = anatomy.myo
        return img, lab

    def render(z: int, c: float) -> tuple[np.ndarray, np.ndarray]:
        u = (z - above) / span
        img = np.mean([at(z, u + o / span, c)[0] for o in PARTIAL_VOLUME_OFFSETS], axis=0)
        return img, at(z, u, c)[1]
    return render


def _draw_meta(rng: np.random.Generator, number: int, subset: str, n_frames: int, seed: int,
               difficulty: str = "easy") -> PhantomPatient:
    s = float(np.round(rng.uniform(0.7, 1.9), 4))
    n = int(np.clip(2 * round(rng.uniform(190.0, 250.0) / s / 2), 96, 160))
    sz = float(np.round(rng.uniform(5.0, 10.0), 2))
    m = int(rng.integers(6, 19))
    es = 1 + max(1, int(round(n_frames * rng.uniform(0.3, 0.45))))
    scale = float(rng.uniform(0.85, 1.1))
    above = 0
    if difficulty == "realistic":  # wider pose/size variation, unlabelled slices above the base
        extra = np.random.default_rng([seed, number, 3])
        scale, above = float(extra.uniform(0.75, 1.25)), int(extra.integers(1, 3))
    half_fov = n * s / 2
    max_shift = max(0.0, half_fov - 62.0 * scale)
    shift = rng.uniform(-1.0, 1.0, size=2) * min(max_shift, 15.0)
    return PhantomPatient(
        patient_id=f"patient{number:03d}", subset=subset, n_slices=m + above, n_frames=n_frames, in_plane_size=n,
        spacing=(s, s, sz), ed_frame=1, es_frame=int(min(es, n_frames)), apex_first=(number + seed) % 5 == 2,
        group=GROUPS[int(rng.integers(len(GROUPS)))], rotation_deg=float(rng.uniform(-180.0, 180.0)), scale=scale,
        translation_mm=(float(shift[0]), float(shift[1])), difficulty=difficulty, slices_above_base=above,
    )


def _to_image(array: np.ndarray, spacing: tuple[float, ...], origin: tuple[float, ...]) -> sitk.Image:
    image = sitk.GetImageFromArray(array, isVector=False)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    return image


def _write(image: sitk.Image, path: Path) -> None:
    sitk.WriteImage(image, os.fspath(path), useCompression=True)


def write_phantom_patient(out_dir: Path, meta: PhantomPatient, seed: int) -> None:
    """Write one patient's folder (Info.cfg, 4D cine, ED/ES frames and labels) under out_dir (a folder
    that :func:`make_phantom` renames into place when complete)."""
    number = int(meta.patient_id[len("patient"):])
    rng = np.random.default_rng([seed, number, 1])
    images, labels = _patient_volume_series(rng, meta)
    if meta.apex_first:
        images, labels = images[:, ::-1], labels[:, ::-1]
    folder = out_dir / meta.subset / meta.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    sx, sy, sz = meta.spacing
    n = meta.in_plane_size
    origin3 = (-(n - 1) / 2 * sx, -(n - 1) / 2 * sy, 0.0)
    _write(_to_image(np.ascontiguousarray(images), (sx, sy, sz, 1.0), (*origin3, 0.0)),
                  folder / f"{meta.patient_id}_4d.nii.gz")
    for frame in (meta.ed_frame, meta.es_frame):
        stem = f"{meta.patient_id}_frame{frame:02d}"
        _write(_to_image(np.ascontiguousarray(images[frame - 1]), meta.spacing, origin3), folder / f"{stem}.nii.gz")
        _write(_to_image(np.ascontiguousarray(labels[frame - 1]), meta.spacing, origin3), folder / f"{stem}_gt.nii.gz")
    height, weight = float(np.round(rng.uniform(150, 195), 1)), float(np.round(rng.uniform(50, 110), 1))
    info = (f"ED: {meta.ed_frame}\nES: {meta.es_frame}\nGroup: {meta.group}\nHeight: {height}\n"
            f"NbFrame: {meta.n_frames}\nWeight: {weight}\n")
    (folder / "Info.cfg").write_text(info)


def make_phantom(out_dir: str | os.PathLike, n_patients: int = 20, seed: int = 0, n_frames: int = 8,
                 first_patient: int = 1, difficulty: str = "easy", overwrite: bool = False) -> list[PhantomPatient]:
    """Write ``n_patients`` phantom patients in the ACDC layout under ``out_dir``; return their metadata.

    ``difficulty``: "easy" (the heart in textured noise; the tests' phantom) or "realistic" (look-alike
    structures around, inside and above the heart, partial volume, wider variation; see
    ``phantom_anatomy``), which the demo and the few-label benchmark use.

    The first ``round(2/3 * n_patients)`` patients go to ``training/``, the rest to ``testing/``.
    ``phantom.json`` in ``out_dir`` records the seed and every patient's drawn parameters.
    ``out_dir`` must be absent or empty unless ``overwrite`` (FileExistsError: old and new patients
    would mix); the phantom is built in a temporary sibling folder that replaces ``out_dir`` when complete.
    """
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if n_frames < 3:
        raise ValueError(f"n_frames must be >= 3 (ED, ES and a diastolic frame), got {n_frames}")
    with replacing_folder(out_dir, overwrite=overwrite) as out:
        patients = _write_patients(out, n_patients, seed, n_frames, first_patient, difficulty)
    logger.info("phantom: %d patients (seed %d) written to %s", n_patients, seed, out_dir)
    return patients


def _write_patients(out: Path, n_patients: int, seed: int, n_frames: int, first_patient: int,
                    difficulty: str) -> list[PhantomPatient]:
    import json
    from dataclasses import asdict

    n_training = max(1, round(TRAINING_FRACTION * n_patients)) if n_patients > 1 else 1
    patients = []
    for i in tqdm(range(n_patients), desc="phantom patients", unit="patient", disable=n_patients < 2):
        number = first_patient + i
        subset = "training" if i < n_training else "testing"
        meta = _draw_meta(np.random.default_rng([seed, number]), number, subset, n_frames, seed, difficulty)
        write_phantom_patient(out, meta, seed)
        patients.append(meta)
    record = {"seed": seed, "n_frames": n_frames, "first_patient": first_patient, "difficulty": difficulty,
              "patients": [asdict(p) for p in patients]}
    (out / "phantom.json").write_text(json.dumps(record, indent=1))
    return patients
