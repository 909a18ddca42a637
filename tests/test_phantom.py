"""The synthetic cine phantom: deterministic per seed and shaped like the ACDC release."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_glrp.conversion.acdc_reader import parse_info_cfg
from nnunetv2_glrp.conversion.phantom import make_phantom

INFO_KEYS = {"ED", "ES", "Group", "Height", "NbFrame", "Weight"}


def _read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def _all_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = make_phantom(tmp_path / "a", n_patients=2, seed=3, n_frames=3)
    b = make_phantom(tmp_path / "b", n_patients=2, seed=3, n_frames=3)
    c = make_phantom(tmp_path / "c", n_patients=2, seed=4, n_frames=3)
    assert a == b
    files_a, files_b = _all_files(tmp_path / "a"), _all_files(tmp_path / "b")
    assert files_a.keys() == files_b.keys() and files_a == files_b
    img_a = sitk.GetArrayFromImage(_read(tmp_path / "a/training/patient001/patient001_frame01.nii.gz"))
    img_c = sitk.GetArrayFromImage(_read(tmp_path / "c/training/patient001/patient001_frame01.nii.gz"))
    assert a != c
    assert img_a.shape != img_c.shape or not np.array_equal(img_a, img_c)


def test_patient_does_not_depend_on_batch(phantom_acdc, tmp_path):
    root, meta = phantom_acdc
    single = make_phantom(tmp_path, n_patients=1, seed=0, first_patient=2)[0]
    ref = meta[1]
    assert (single.patient_id, single.spacing, single.n_slices, single.apex_first) == \
        (ref.patient_id, ref.spacing, ref.n_slices, ref.apex_first)
    name = f"{ref.patient_id}_frame{ref.ed_frame:02d}_gt.nii.gz"
    a = sitk.GetArrayFromImage(_read(tmp_path / "training" / ref.patient_id / name))
    b = sitk.GetArrayFromImage(_read(root / ref.folder / name))
    assert np.array_equal(a, b)


def test_release_layout_and_info(phantom_acdc):
    root, meta = phantom_acdc
    assert [p.patient_id for p in meta] == [f"patient{i:03d}" for i in range(1, 11)]
    assert [p.subset for p in meta].count("training") == 7
    assert {p.subset for p in meta} == {"training", "testing"}
    assert any(p.apex_first for p in meta) and not all(p.apex_first for p in meta)
    for p in meta:
        folder = root / p.subset / p.patient_id
        text = (folder / "Info.cfg").read_text()
        keys = {line.split(":")[0] for line in text.splitlines() if line}
        assert keys == INFO_KEYS
        info = parse_info_cfg(folder / "Info.cfg", p.patient_id)
        assert (info["ED"], info["ES"], info["NbFrame"]) == (p.ed_frame, p.es_frame, p.n_frames)
        assert info["Group"] in {"DCM", "HCM", "MINF", "NOR", "RV"}
        expected = {f"{p.patient_id}_4d.nii.gz", "Info.cfg"} | {
            f"{p.patient_id}_frame{f:02d}{s}.nii.gz" for f in (p.ed_frame, p.es_frame) for s in ("", "_gt")}
        assert {q.name for q in folder.iterdir()} == expected


def test_geometry_labels_and_anatomy(phantom_acdc):
    root, meta = phantom_acdc
    for p in meta:
        folder = root / p.subset / p.patient_id
        ed_img = _read(folder / f"{p.patient_id}_frame{p.ed_frame:02d}.nii.gz")
        ed = sitk.GetArrayFromImage(_read(folder / f"{p.patient_id}_frame{p.ed_frame:02d}_gt.nii.gz"))
        es = sitk.GetArrayFromImage(_read(folder / f"{p.patient_id}_frame{p.es_frame:02d}_gt.nii.gz"))
        cine = _read(folder / f"{p.patient_id}_4d.nii.gz")
        sx, sy, sz = ed_img.GetSpacing()
        assert 0.7 <= sx <= 1.9 and sx == sy and 5.0 <= sz <= 10.0
        assert 6 <= p.n_slices <= 18 and ed.shape[0] == p.n_slices
        assert 96 <= ed.shape[1] <= 160
        assert cine.GetDimension() == 4 and cine.GetSize() == (*ed_img.GetSize(), p.n_frames)
        assert np.array_equal(sitk.GetArrayFromImage(cine)[p.ed_frame - 1], sitk.GetArrayFromImage(ed_img))
        assert set(np.unique(ed)) == {0, 1, 2, 3}
        # slice order as stored: apex at the end for base-first patients, at index 0 for apex-first ones
        apex, base = (0, -1) if p.apex_first else (-1, 0)
        assert not (ed[apex] == 1).any() and (ed[base] == 1).any(), p.patient_id
        assert (ed[apex] == 3).sum() < (ed[base] == 3).sum()
        assert (ed == 3).sum() > 1.3 * (es == 3).sum()  # LV blood pool contracts from ED to ES


def test_texture_is_not_flat(phantom_acdc):
    """Tissue outside the heart carries texture (local std well above the noise level)."""
    root, meta = phantom_acdc
    p = meta[0]
    img = sitk.GetArrayFromImage(_read(root / p.folder / f"{p.patient_id}_frame01.nii.gz")).astype(float)
    lab = sitk.GetArrayFromImage(_read(root / p.folder / f"{p.patient_id}_frame01_gt.nii.gz"))
    z = p.n_slices // 2
    n = img.shape[1]
    centre = img[z, n // 2 - n // 4: n // 2 + n // 4, n // 2 - n // 4: n // 2 + n // 4]
    assert centre.std() > 0.1 * centre.mean()
    assert img[z][lab[z] == 3].mean() > img[z][lab[z] == 2].mean()  # bright blood, dark myocardium


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="n_patients"):
        make_phantom(tmp_path, n_patients=0)
    with pytest.raises(ValueError, match="n_frames"):
        make_phantom(tmp_path, n_patients=1, n_frames=2)
    with pytest.raises(ValueError, match="difficulty"):
        make_phantom(tmp_path, n_patients=1, difficulty="hard")


@pytest.fixture(scope="module")
def realistic(tmp_path_factory):
    root = tmp_path_factory.mktemp("realistic")
    return root, make_phantom(root, n_patients=3, seed=0, n_frames=3, difficulty="realistic")


def _base_first(root: Path, p, frame: int, what: str = "") -> np.ndarray:
    array = sitk.GetArrayFromImage(_read(root / p.folder / f"{p.patient_id}_frame{frame:02d}{what}.nii.gz"))
    return array[::-1] if p.apex_first else array


def test_realistic_phantom_is_deterministic_and_leaves_easy_patients_alone(realistic, phantom_acdc, tmp_path):
    root, meta = realistic
    again = make_phantom(tmp_path / "again", n_patients=3, seed=0, n_frames=3, difficulty="realistic")
    assert again == meta and _all_files(tmp_path / "again").keys() == _all_files(root).keys()
    assert all(_all_files(tmp_path / "again")[k] == v for k, v in _all_files(root).items())
    easy_root, easy_meta = phantom_acdc  # the session's easy phantom (seed 0, 8 frames)
    easy = make_phantom(tmp_path / "easy", n_patients=1, seed=0, first_patient=1)[0]
    assert easy == easy_meta[0] and easy.difficulty == "easy" and easy.slices_above_base == 0
    ref = _read(easy_root / easy.folder / "patient001_frame01.nii.gz")
    assert np.array_equal(sitk.GetArrayFromImage(_read(tmp_path / "easy" / easy.folder / "patient001_frame01.nii.gz")),
                          sitk.GetArrayFromImage(ref))


def test_realistic_phantom_has_unlabelled_look_alikes_above_the_base(realistic):
    root, meta = realistic
    for p in meta:
        assert p.difficulty == "realistic" and p.slices_above_base in (1, 2)
        labels = _base_first(root, p, p.ed_frame, "_gt")
        image = _base_first(root, p, p.ed_frame).astype(float)
        above = p.slices_above_base
        assert not labels[:above].any() and (labels[above] == 3).any()  # labels start at the base
        blood = image[above + 1][labels[above + 1] == 3].mean()
        # the slice above the base holds blood-bright structures (atrium, great vessels) nobody labels
        assert (image[above - 1] > 0.8 * blood).sum() > 0.5 * (labels[above] == 3).sum(), p.patient_id


def test_realistic_phantom_has_dark_muscle_inside_the_lv_label(realistic):
    """Papillary muscles and trabeculae: myocardium-dark pixels labelled LV (as ACDC labels them)."""
    root, meta = realistic
    found = 0
    for p in meta:
        labels = _base_first(root, p, p.ed_frame, "_gt")
        image = _base_first(root, p, p.ed_frame).astype(float)
        mid = p.slices_above_base + (p.n_slices - p.slices_above_base) // 2
        lv, myo = image[mid][labels[mid] == 3], image[mid][labels[mid] == 2]
        found += int((lv < np.median(myo) * 1.2).sum() > 0.02 * lv.size)
    assert found >= 2


def test_non_empty_folder_is_refused_unless_overwrite_which_replaces_it(tmp_path, capsys, monkeypatch):
    from nnunetv2_glrp.cli import main
    from nnunetv2_glrp.conversion import phantom

    out = tmp_path / "ph"
    make_phantom(out, n_patients=3, seed=0, n_frames=3)  # patient001-002 training, patient003 testing
    (out / "stray.txt").write_text("old")
    before = _all_files(out)
    with pytest.raises(FileExistsError, match="ph is not empty"):
        make_phantom(out, n_patients=2, seed=1, n_frames=3)
    assert main(["make-phantom", str(out), "--patients", "2", "--frames", "3"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert _all_files(out) == before

    # a failure half-way leaves the old folder as it was and no temporary folder behind
    real = phantom.write_phantom_patient

    def fail_on_second(out_dir, meta, seed):
        if meta.patient_id == "patient002":
            raise RuntimeError("disk full")
        real(out_dir, meta, seed)
    monkeypatch.setattr(phantom, "write_phantom_patient", fail_on_second)
    with pytest.raises(RuntimeError, match="disk full"):
        make_phantom(out, n_patients=2, seed=1, n_frames=3, overwrite=True)
    assert _all_files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ph"]
    monkeypatch.undo()

    # 2 patients: patient001 training, patient002 testing; nothing of the 3-patient phantom is left
    make_phantom(out, n_patients=2, seed=1, n_frames=3, overwrite=True)
    assert sorted(p.relative_to(out).as_posix() for p in out.glob("*/patient*")) == [
        "testing/patient002", "training/patient001"]
    assert not (out / "stray.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ph"]
