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
