"""Every subcommand of nnUNetv2_glrp parses -h, and bad input gives a clear error without a traceback."""

import subprocess
import sys

import pytest

from nnunetv2_glrp.cli import build_parser, main
from nnunetv2_glrp.commands import SUBCOMMANDS


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_subcommand_help(name, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([name, "-h"])
    assert exc.value.code == 0
    assert "usage" in capsys.readouterr().out


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "nnunetv2_glrp.cli", "-h"], capture_output=True, text=True)
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_evaluate_missing_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "ref").mkdir()
    code = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref")])
    assert code == 2
    assert "no reference files" in capsys.readouterr().err


def test_pretrain_preset_help_matches_the_presets():
    from nnunetv2_glrp.commands.pretrain import PRESET_HELP
    from nnunetv2_glrp.pretraining.config import PRESETS

    cpu, paper = PRESETS["cpu"], PRESETS["paper"]
    assert (f"cpu: {cpu.epochs} epochs x {cpu.iterations_per_epoch} iterations, batch {cpu.batch_size};"
            in PRESET_HELP)
    assert paper.iterations_per_epoch is None
    assert f"paper: {paper.epochs} epochs of one pass over the slices, batch {paper.batch_size}" in PRESET_HELP
