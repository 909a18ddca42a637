import json

import pytest

from nnunetv2_glrp.atomic_files import atomic_write_json, atomic_write_text


def test_write_replaces_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_json(target, {"x": 1})
    atomic_write_json(target, {"x": 2})
    assert json.loads(target.read_text()) == {"x": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_failed_write_keeps_the_previous_file(tmp_path):
    target = tmp_path / "a.json"
    atomic_write_text(target, "old")
    with pytest.raises(TypeError):
        atomic_write_json(target, {"not serialisable": object()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]


def test_atomic_output_keeps_the_name_ending_and_cleans_up(tmp_path):
    from nnunetv2_glrp.atomic_files import atomic_output

    target = tmp_path / "case.nii.gz"
    with atomic_output(target) as tmp:
        assert tmp.endswith(".nii.gz") and tmp != str(target)
        with open(tmp, "w") as f:
            f.write("done")
    assert target.read_text() == "done"
    with pytest.raises(RuntimeError):
        with atomic_output(tmp_path / "other.npz") as tmp:
            with open(tmp, "w") as f:
                f.write("half")
            raise RuntimeError("killed")
    assert [p.name for p in tmp_path.iterdir()] == ["case.nii.gz"]
