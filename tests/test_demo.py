"""The demo's resume guard: a demo folder is reused only with the settings that made it."""

import json

import pytest

from nnunetv2_glrp.demo import DemoConfig, _record_config


def test_demo_config_is_recorded_and_a_mismatch_refused(tmp_path):
    path = tmp_path / "demo_config.json"
    _record_config(DemoConfig(out=str(tmp_path), seed=0), path)
    assert json.loads(path.read_text())["seed"] == 0
    _record_config(DemoConfig(out=str(tmp_path), seed=0), path)  # same settings: resume is fine
    with pytest.raises(ValueError, match="seed"):
        _record_config(DemoConfig(out=str(tmp_path), seed=1), path)
