"""A damaged ``.pth`` is a one-line error naming the file, whatever torch.load trips over."""

from __future__ import annotations

import re

import pytest
import torch

from nnunetv2_glrp.torch_files import load_torch_file


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # what an interrupted copy leaves


@pytest.mark.parametrize("damage", [
    _truncated,
    lambda p: p.write_text("hello world\n", encoding="utf-8"),  # pickle: "Memo value not found"
    lambda p: p.write_bytes(b""),  # "Ran out of input"
    lambda p: p.write_bytes(b"I12x\n"),  # "could not convert string to int"
])
def test_a_damaged_file_is_named_in_one_line(tmp_path, damage):
    path = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {"w": torch.arange(1000.0)}}, path)
    assert torch.equal(load_torch_file(path)["network_weights"]["w"], torch.arange(1000.0))
    damage(path)
    with pytest.raises(ValueError) as info:
        load_torch_file(path, "trainer X fold 0: checkpoint")
    message = str(info.value)
    assert "\n" not in message
    assert re.match(rf"trainer X fold 0: checkpoint {re.escape(str(path))} cannot be read: the file is corrupt or "
                    r"incomplete", message)


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"pretrained encoder .*nothing\.pth not found"):
        load_torch_file(tmp_path / "nothing.pth", "pretrained encoder")
