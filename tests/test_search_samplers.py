"""`--sampler gp` on a conditional space is refused (GPSampler would sample every method parameter
at random for ever); on a space where every trial has the same parameters it runs."""
from __future__ import annotations

import optuna
import pytest

from drltune.errors import DrltuneError
from drltune.search.runner import DEFAULT_SPACE
from drltune.search.samplers import conditional_params, make_sampler
from drltune.search.space import load_space, parse_space


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


def test_forgiving_sampler_hides_only_trials_pruned_at_the_first_verdict() -> None:
    """TPE behind ForgivingSampler does not see a trial pruned at step <= the first verdict; one
    pruned later, and complete ones, it sees as usual."""
    import optuna
    from optuna.trial import TrialState

    from drltune.search.samplers import ForgivingSampler

    seen: list[list[int]] = []

    class Spy(optuna.samplers.RandomSampler):
        def sample_independent(self, study, trial, name, dist):  # type: ignore[no-untyped-def]
            seen.append([t.number for t in study._get_trials(deepcopy=False, states=(TrialState.PRUNED,
                                                                                      TrialState.COMPLETE))])
            return super().sample_independent(study, trial, name, dist)

    study = optuna.create_study(direction="maximize", sampler=ForgivingSampler(Spy(seed=0), before_step=2))
    for number, last_step in enumerate((1, 2, 3)):  # pruned after epochs 1, 2 (first verdict), 3
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        for step in range(last_step + 1):
            trial.report(0.1, step)
        study.tell(trial, state=TrialState.PRUNED)
    done = study.ask()
    done.suggest_float("x", 0, 1)
    study.tell(done, 0.5)
    seen.clear()
    study.ask().suggest_float("x", 0, 1)
    assert seen == [[2, 3]]
