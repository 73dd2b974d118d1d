"""TrialConfig's training knobs are declared once (config.KNOBS) and that declaration drives the
type checks, the defaults, the range checks, the search space's types and the listings."""
from __future__ import annotations

import dataclasses
import typing

import pytest

from drltune.cli import main
from drltune.config import EPOCH_KEYS, FIELD_TYPES, GLOBAL_DEFAULTS, KNOBS, SETTINGS, TrialConfig
from drltune.errors import DrltuneError
from drltune.params import yaml_number
from drltune.resolve import resolve
from drltune.search.space_file import parse_space

DECLARED = (*KNOBS, *SETTINGS)


def test_the_declaration_matches_the_dataclass():
    fields = {f.name: f for f in dataclasses.fields(TrialConfig)}
    assert set(FIELD_TYPES) == set(fields)
    hints = typing.get_type_hints(TrialConfig)
    for name, typ in FIELD_TYPES.items():
        hint = hints[name]
        written = {typing.get_origin(hint)} if typing.get_origin(hint) is dict else set(typing.get_args(hint)) or {hint}
        assert typ in written, name
    for knob in KNOBS:  # unset, so that a dataset's default can apply
        assert fields[knob.name].default is None, knob.name
    for setting in SETTINGS:
        assert fields[setting.name].default == setting.default, setting.name
    assert GLOBAL_DEFAULTS == {k.name: k.default for k in KNOBS}
    assert EPOCH_KEYS == {"lr_step"}


@pytest.mark.parametrize("knob", [k for k in DECLARED if k.kind != "bool"], ids=lambda k: k.name)
def test_each_declared_range_is_what_resolve_checks(knob):
    if knob.kind == "choice":
        bad = "nonsense"
        message = f"{knob.name}: 'nonsense' is not one of"
    else:
        bad = knob.high + 1 if knob.kind == "int" else knob.high * 2
        message = f"{knob.name}: {bad} is outside"
    with pytest.raises(DrltuneError, match=rf"^{message}"):
        resolve(TrialConfig(**{knob.name: bad}))
    if knob.default is not None:
        assert getattr(resolve(TrialConfig(dataset="synthetic", **{knob.name: knob.default})), knob.name) == knob.default


def test_a_knob_left_unset_takes_the_dataset_default_then_the_declared_one():
    resolved = resolve(TrialConfig())
    assert resolved.batch_size == 32  # synthetic's own default
    assert resolved.momentum == GLOBAL_DEFAULTS["momentum"] == 0.9


def test_types_come_from_the_declaration():
    with pytest.raises(DrltuneError, match=r"^augment: expected bool, got 'yes'"):
        TrialConfig.from_dict({"augment": "yes"})
    assert TrialConfig.from_dict({"lr_step": 5.0}).lr_step == 5  # an int knob takes a whole float
    space = parse_space({"space": {"lr_step": {"low": 2, "high": 4}}, "methods": {"baseline": {}}}, 8)
    assert space.top[0].kind == "int"


def test_yaml_1e_3_is_a_number_everywhere(tmp_path):
    assert yaml_number("1e-3") == 0.001 and yaml_number("3") == 3 and yaml_number("lr") == "lr"
    path = tmp_path / "c.yaml"
    path.write_text("lr: 1e-3\nmethod: dr\nparams: {alpha: 2e0}\n")  # YAML 1.1 reads both as strings
    cfg = resolve(TrialConfig.load_yaml(path)[0])
    assert cfg.lr == 0.001 and cfg.params["alpha"] == 2.0
    space = parse_space({"space": {"lr": {"low": "1e-4", "high": "1e-2", "log": True}},
                         "methods": {"baseline": {}}}, 8)
    assert (space.top[0].low, space.top[0].high) == (1e-4, 1e-2)


def test_config_and_train_help_list_every_knob(capsys):
    main(["config"])
    listed = capsys.readouterr().out
    main(["train", "--help"])
    train_help = capsys.readouterr().out
    for knob in KNOBS:
        assert f"    {knob.describe()}" in listed and knob.describe() in train_help
    for setting in SETTINGS:
        assert f"    {setting.describe()}" in listed
