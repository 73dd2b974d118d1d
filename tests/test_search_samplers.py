"""`--sampler gp` on a conditional space is refused (GPSampler would sample every method parameter
at random for ever); on a space where every trial has the same parameters it runs."""
from __future__ import annotations

import optuna
import pytest

from drltune.errors import DrltuneError
from drltune.search.runner import DEFAULT_SPACE
from drltune.search.samplers import conditional_params, make_sampler
from drltune.search.space_file import load_space, parse_space


def test_gp_is_refused_on_the_default_conditional_space():
    space = load_space(DEFAULT_SPACE, 12)
    assert "dr.alpha" in conditional_params(space)
    with pytest.raises(DrltuneError, match="--sampler gp cannot model a conditional space"):
        make_sampler("gp", 0, 8, space)
    for name in ("tpe", "random"):
        make_sampler(name, 0, 8, space)


def test_gp_runs_on_a_single_method_space_and_models_the_method_parameters():
    space = parse_space({"space": {"lr": {"low": 1.0e-3, "high": 1.0e-1, "log": True}},
                         "methods": {"dr": {"alpha": {"low": 0.5, "high": 5.0}}}}, 4)
    assert conditional_params(space) == []
    sampler, args = make_sampler("gp", 0, 8, space)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    for _ in range(6):
        trial = study.ask()
        values = space.sample(trial)
        study.tell(trial, values["params"]["alpha"] - values["lr"])
    trial = study.ask()
    space.sample(trial)
    relative = sampler.infer_relative_search_space(study, study.trials[-1])
    assert {"lr", "dr.alpha"} <= set(relative)  # both modelled, none left to random sampling

