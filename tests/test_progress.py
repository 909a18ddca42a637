"""``nnunetv2_glrp.progress``: tqdm on a terminal, a few plain lines in a log file."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import nnunetv2_glrp
from nnunetv2_glrp.progress import progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _run(stream, n=1000, **kwargs):
    for _ in progress(range(n), file=stream, desc="work", **kwargs):
        pass
    return stream.getvalue()


def test_a_log_file_gets_about_one_line_per_ten_percent(monkeypatch):
    monkeypatch.delenv("GLRP_PROGRESS", raising=False)
    text = _run(io.StringIO())
    lines = text.splitlines()
    assert "\r" not in text
    assert 2 <= len(lines) <= 12, lines
    assert lines[-1].startswith("work: 100%") and "1000/1000" in lines[-1]
    assert sum("1000/1000" in line for line in lines) == 1  # the closing redraw is not a second line


def test_a_redraw_whose_rate_narrows_the_bar_is_not_a_second_line():
    """With a fixed width, a longer rate string (a slower machine) draws fewer bar characters: the same count."""
    from nnunetv2_glrp.progress import _LineWriter

    stream = io.StringIO()
    writer = _LineWriter(stream)
    writer.write("\rwork:  90%|#########3 | 900/1000 [00:00<00:00, 9999.99it/s]")
    writer.write("\rwork: 100%|##########| 1000/1000 [00:00<00:00, 9999.99it/s]")
    writer.write("\rwork: 100%|#########8| 1000/1000 [00:00<00:00, 123456.78it/s]\n")
    writer.write("\rwork: 1000it [00:01, 999.9it/s]")
    writer.write("\rwork: 1000it [00:01, 1000.0it/s]")
    assert stream.getvalue().splitlines() == ["work:  90%|#########3 | 900/1000 [00:00<00:00, 9999.99it/s]",
                                              "work: 100%|##########| 1000/1000 [00:00<00:00, 9999.99it/s]",
                                              "work: 1000it [00:01, 999.9it/s]"]


def test_a_log_file_with_unknown_total_gets_start_and_end_lines(monkeypatch):
    monkeypatch.delenv("GLRP_PROGRESS", raising=False)
    stream = io.StringIO()
    for _ in progress(iter(range(1000)), file=stream, desc="work"):
        pass
    lines = stream.getvalue().splitlines()
    assert 1 <= len(lines) <= 3 and "1000" in lines[-1]


def test_manual_updates_with_a_total_and_disable_none(monkeypatch):
    monkeypatch.delenv("GLRP_PROGRESS", raising=False)
    stream = io.StringIO()
    with progress(total=500, file=stream, desc="cases") as bar:
        for _ in range(500):
            bar.update()
    assert 2 <= len(stream.getvalue().splitlines()) <= 12
    assert _run(io.StringIO(), disable=None) == ""  # tqdm's "no bar unless a terminal" keeps its meaning


def test_a_terminal_gets_tqdms_bar(monkeypatch):
    monkeypatch.delenv("GLRP_PROGRESS", raising=False)
    assert "\r" in _run(_Terminal())


@pytest.mark.parametrize("value, expect_bar", [("1", True), ("0", False)])
def test_the_environment_variable_forces_the_choice(monkeypatch, value, expect_bar):
    monkeypatch.setenv("GLRP_PROGRESS", value)
    text = _run(io.StringIO())
    assert ("\r" in text) is expect_bar
    if not expect_bar:
        assert text == "" and _run(_Terminal()) == ""


def test_the_package_calls_tqdm_only_through_progress():
    package = Path(nnunetv2_glrp.__file__).resolve().parent
    direct = [f"{path.relative_to(package)}:{n}" for path in sorted(package.rglob("*.py")) if path.name != "progress.py"
              for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
              if re.match(r"\s*(from tqdm\b|import tqdm\b)", line)]
    assert direct == []
