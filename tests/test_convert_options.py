"""The ``convert-*`` commands keep every option (and default) they had before the shared options moved to
``commands.options.add_conversion_options``: the expected sets below were read off the parsers before that
change and are hard-coded, so dropping, renaming or re-defaulting an option fails here."""

import pytest

from nnunetv2_glrp.cli import build_parser

SHARED = {"-h", "--help", "-d", "--dataset", "--dataset-id", "--split", "--seed", "--split_file", "--name",
          "--overwrite"}
OPTIONS = {
    "convert-acdc": SHARED | {"--n4"},
    "convert-folder": SHARED | {"--n4", "--labels", "--pattern", "--table", "--label_pattern", "--cine_pattern",
                                "--slice_order"},
    "convert-mnms": SHARED | {"--n4", "--info"},
    "convert-sunnybrook": SHARED,
}
SHARED_DEFAULTS = {"dataset": 5, "split": "7:1:2", "seed": 0, "split_file": None, "overwrite": False}
# argv with only the required arguments -> every parsed value
DEFAULTS = {
    "convert-acdc": (["r", "-d", "5"], dict(SHARED_DEFAULTS, acdc_root="r", n4=False, name="ACDC")),
    "convert-folder": (["r", "-d", "5", "--labels", "background=0", "--pattern", "x"],
                       dict(SHARED_DEFAULTS, root="r", n4=False, name="Folder", labels="background=0", pattern="x",
                            table=None, label_pattern=None, cine_pattern=None, slice_order=None)),
    "convert-mnms": (["r", "-d", "5"], dict(SHARED_DEFAULTS, root="r", n4=False, name="MnMs", info=None)),
    "convert-sunnybrook": (["r", "-d", "5"], dict(SHARED_DEFAULTS, root="r", name="Sunnybrook")),
}

# the converter-specific split values named in --split's help
SPLIT_FORMS = {"convert-acdc": "'official'", "convert-mnms": "'vendor:X'"}


def _subparser(name):
    parser = build_parser()
    return next(a for a in parser._actions if a.dest == "command").choices[name]


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_converter_keeps_its_option_strings(name):
    assert set(_subparser(name)._option_string_actions) == OPTIONS[name]


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_each_converter_keeps_its_defaults(name):
    argv, expected = DEFAULTS[name]
    parsed = {k: v for k, v in vars(_subparser(name).parse_args(argv)).items() if not k.startswith("_")}
    assert parsed == expected


@pytest.mark.parametrize("name", sorted(OPTIONS))
def test_each_converter_lists_its_options_in_help_and_parses_the_old_spelling(name, capsys):
    sub = _subparser(name)
    shown = {o for a in sub._actions if a.help != "==SUPPRESS==" for o in a.option_strings}
    assert shown == OPTIONS[name] - {"--dataset-id"}  # the old spelling stays hidden ...
    help_text = sub.format_help()
    assert all(option in help_text for option in shown) and "--dataset-id" not in help_text
    for other, form in SPLIT_FORMS.items():
        assert (form in help_text) == (other == name), (name, form)
    assert sub.parse_args(DEFAULTS[name][0][:1] + ["--dataset-id", "7"] + DEFAULTS[name][0][3:]).dataset == 7  # ... but parses
