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
    out = subprocess.run([sys.executable, "-m", "nnunetv2_glrp.cli", "-h"], capture_output=True, encoding="utf-8", errors="replace")
    assert out.returncode == 0
    for name in SUBCOMMANDS:
        assert name in out.stdout


def test_evaluate_missing_folder_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "ref").mkdir()
    code = main(["evaluate", str(tmp_path / "pred"), str(tmp_path / "ref")])
    assert code == 2
    assert "no reference files" in capsys.readouterr().err


def test_pretrain_offers_every_pretraining_method_and_each_builds_its_config(capsys):
    """The paper's four methods and its three baselines, each a config with the paper's lambdas; nothing else."""
    from nnunetv2_glrp.commands.pretrain import METHOD_CHOICES
    from nnunetv2_glrp.pretraining.config import make_config

    assert sorted(METHOD_CHOICES) == sorted(["GLRP", "GRP", "LRP", "GLRPLinear", "SimCLR", "GCL", "PCL"])
    lambdas = {"GLRP": (0.5, 0.5), "GRP": (1.0, 0.0), "LRP": (0.0, 1.0), "GLRPLinear": (0.5, 0.5), "SimCLR": (1.0, 0.0),
               "GCL": (1.0, 0.0), "PCL": (1.0, 0.0)}
    for method in METHOD_CHOICES:
        config = make_config(method, "cpu")
        assert (config.method, config.lambda_global, config.lambda_local) == (method, *lambdas[method])
    assert make_config("GLRPLinear", "cpu").similarity_kind == "linear"
    with pytest.raises(SystemExit) as exit_info:
        main(["pretrain", "-d", "1", "-c", "2d", "-m", "BYOL"])
    assert exit_info.value.code == 2 and "invalid choice: 'BYOL'" in capsys.readouterr().err


def test_pretrain_preset_help_matches_the_presets():
    from nnunetv2_glrp.commands.pretrain import PRESET_CHOICES, PRESET_HELP
    from nnunetv2_glrp.pretraining.config import PRESETS

    assert sorted(PRESET_CHOICES) == sorted(PRESETS)
    cpu, full = PRESETS["cpu"], PRESETS["full"]
    assert (f"cpu: {cpu.epochs} epochs x {cpu.iterations_per_epoch} iterations, batch {cpu.batch_size};"
            in PRESET_HELP)
    assert full.iterations_per_epoch is None
    assert f"full: {full.epochs} epochs of one pass over the slices, batch {full.batch_size}" in PRESET_HELP


def _subparsers():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    return {name: choices[name] for name in SUBCOMMANDS}


NNUNET_SPELLING = {"-d": "dataset", "-c": "configuration", "-p": "plans_identifier", "-np": "num_processes",
                   "-device": "device", "-m": "method", "-o": "out"}


def test_options_are_spelled_as_in_nnunet_and_the_same_everywhere():
    seen = set()
    for name, sub in _subparsers().items():
        for action in sub._actions:
            for option in action.option_strings:
                if option in NNUNET_SPELLING:
                    assert action.dest == NNUNET_SPELLING[option], (name, option, action.dest)
                    seen.add(option)
                if option.startswith("--"):
                    assert "-" not in option[2:], f"{name} {option}: long options use underscores like nnU-Net"
                if action.dest in NNUNET_SPELLING.values():
                    short = {v: k for k, v in NNUNET_SPELLING.items()}[action.dest]
                    assert short in action.option_strings, (name, action.option_strings)
            has_default = action.default not in (None, False, "==SUPPRESS==") and action.option_strings
            if has_default and action.dest not in ("help", "version"):
                assert "default" in (action.help or ""), f"{name} {action.option_strings}: help gives no default"
    assert seen == set(NNUNET_SPELLING)


def test_old_spellings_still_parse_as_hidden_aliases(capsys):
    parser = build_parser()
    assert parser.parse_args(["prepare", "-d", "27", "-pl", "MyPlans"]).plans_identifier == "MyPlans"
    assert parser.parse_args(["convert-acdc", "x", "--dataset-id", "27"]).dataset == 27
    assert parser.parse_args(["pretrain", "-d", "27", "-c", "2d", "--batch-size", "4"]).batch_size == 4
    assert parser.parse_args(["make-phantom", "x", "--first-patient", "3"]).first_patient == 3
    with pytest.raises(SystemExit):
        parser.parse_args(["prepare", "-h"])
    help_text = capsys.readouterr().out
    assert "-pl " not in help_text and "--overlay" in help_text and "-p PLANS_IDENTIFIER" in help_text


def test_prepare_with_an_overlay_name_for_p_says_what_changed(capsys):
    assert main(["prepare", "-d", "999", "-p", "paper_unet"]) == 2
    assert "use --overlay paper_unet" in capsys.readouterr().err
    assert main(["prepare", "-d", "999", "-pl", "paper"]) == 2  # the overlay's name before its rename
    assert "use --overlay paper_unet" in capsys.readouterr().err


def test_version():
    from nnunetv2_glrp import __version__

    out = subprocess.run([sys.executable, "-m", "nnunetv2_glrp.cli", "--version"], capture_output=True, encoding="utf-8", errors="replace")
    assert out.returncode == 0 and out.stdout.strip() == f"nnUNetv2_glrp {__version__}"


@pytest.mark.parametrize("argv", [["-h"], ["prepar", "-d", "1"], ["prepare", "-h"], ["--version"],
                                  ["make-phantom", "ph", "--patients", "1", "--frames", "3"],
                                  ["evaluate", "nowhere", "nothing"]])
def test_help_typos_and_folder_free_commands_create_no_nnunet_data(tmp_path, argv):
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("nnUNet_") and k != "GLRP_DATA"}
    subprocess.run([sys.executable, "-m", "nnunetv2_glrp.cli", *argv], cwd=tmp_path, env=env, capture_output=True)
    assert not (tmp_path / "nnunet_data").exists()


def test_pretrain_passes_the_psm_location_as_a_config_override(monkeypatch, tmp_path):
    """--psm-location reaches ensure_pretrained as the psm_location field (absent: the preset's "auto")."""
    import nnunetv2_glrp.pretraining as pretraining

    seen = []

    def fake(dataset, configuration, **kw):
        seen.append(kw)
        return tmp_path / "enc.pth"

    monkeypatch.setattr(pretraining, "ensure_pretrained", fake)
    monkeypatch.setattr(pretraining, "load_pretrained_encoder_state", lambda path: {})
    assert main(["pretrain", "-d", "1", "-c", "2d", "--psm-location", "device"]) == 0
    assert main(["pretrain", "-d", "1", "-c", "2d"]) == 0
    assert seen[0]["psm_location"] == "device" and "psm_location" not in seen[1]


def test_pretrain_passes_autocast_channels_last_and_compile_as_config_fields(monkeypatch, tmp_path):
    """--autocast, --channels_last (alias --channels-last) and --compile reach ensure_pretrained as config fields
    (so they are recorded in config.json with the rest of the config), absent ones keep the preset's; the written-out
    choices are the config's."""
    import nnunetv2_glrp.pretraining as pretraining
    from nnunetv2_glrp.commands.pretrain import AUTOCAST_CHOICES, COMPILE_CHOICES
    from nnunetv2_glrp.pretraining.compiling import COMPILE_MODES
    from nnunetv2_glrp.pretraining.config import AUTOCAST

    assert (AUTOCAST_CHOICES, COMPILE_CHOICES) == (AUTOCAST, COMPILE_MODES)
    seen = []

    def fake(dataset, configuration, **kw):
        seen.append(kw)
        return tmp_path / "enc.pth"

    monkeypatch.setattr(pretraining, "ensure_pretrained", fake)
    monkeypatch.setattr(pretraining, "load_pretrained_encoder_state", lambda path: {})
    assert main(["pretrain", "-d", "1", "-c", "2d", "--autocast", "bf16", "--channels-last", "--compile",
                 "max-autotune"]) == 0
    assert main(["pretrain", "-d", "1", "-c", "2d", "--channels_last"]) == 0
    assert main(["pretrain", "-d", "1", "-c", "2d"]) == 0
    assert {k: seen[0][k] for k in ("autocast", "channels_last", "compile")} == {
        "autocast": "bf16", "channels_last": True, "compile": "max-autotune"}
    assert seen[1]["channels_last"] is True and not {"autocast", "compile"} & set(seen[1])
    assert not {"autocast", "channels_last", "compile"} & set(seen[2])
    config = pretraining.make_config(**{k: seen[0][k] for k in ("autocast", "channels_last", "compile")})
    assert (config.autocast, config.channels_last, config.compile) == ("bf16", True, "max-autotune")
    assert main(["pretrain", "-d", "1", "-c", "2d", "--autocast", "fp16"]) == 0  # float16 with a gradient scaler
    assert seen[3]["autocast"] == "fp16" and pretraining.make_config(autocast="fp16").autocast == "fp16"
