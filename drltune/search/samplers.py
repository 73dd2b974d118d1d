"""The Optuna sampler behind `--sampler`; every argument explicit, so a study records what it ran
with."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Callable

import optuna

from drltune.errors import DrltuneError
from drltune.search.options import SAMPLERS

if TYPE_CHECKING:
    from drltune.search.space import SearchSpace


def conditional_params(space: SearchSpace | None) -> list[str]:
    """The searched parameters that exist only when their method is chosen (empty: a flat space)."""
    if space is None or len(space.methods) < 2:
        return []
    return [d.name for dims in space.methods.values() for d in dims if d.searched]


def check_sampler(name: str, space: SearchSpace | None) -> None:
    """Refuse `--sampler gp` on a conditional space: Optuna's GPSampler models only the parameters
    every trial has, so each method's own parameters would be sampled at random for ever."""
    conditional = conditional_params(space) if name == "gp" else []
    if conditional:
        shown = ", ".join(conditional[:3]) + (", ..." if len(conditional) > 3 else "")
        raise DrltuneError(
            f"--sampler gp cannot model a conditional space (method parameters {shown} exist "
            "only for their method); use --sampler tpe, or a space with one method"
        )


def make_sampler(
    name: str, seed: int, n_trials: int, space: SearchSpace | None = None
) -> tuple[optuna.samplers.BaseSampler, dict[str, Any]]:
    """The sampler and its arguments. TPE models each method's branch jointly (`group`) and, with
    `constant_liar`, steers away from configurations that are still running (concurrent trials)."""
    n_startup = max(4, min(10, n_trials // 4))
    if name == "tpe":
        args: dict[str, Any] = {
            "seed": seed,
            "n_startup_trials": n_startup,
            "multivariate": True,
            "group": True,
            "constant_liar": True,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(**args)
    elif name == "random":
        args = {"seed": seed}
        sampler = optuna.samplers.RandomSampler(**args)
    elif name == "gp":
        check_sampler(name, space)
        args = {"seed": seed, "n_startup_trials": n_startup}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.GPSampler(**args)
    else:
        raise DrltuneError(f"--sampler {name!r}: valid: {', '.join(SAMPLERS)}")
    return sampler, {"name": name, **args}


def search_sampler(
    name: str,
    seed: int,
    n_trials: int,
    space: SearchSpace | None = None,
    wrap: Callable[[optuna.samplers.BaseSampler], optuna.samplers.BaseSampler] | None = None,
) -> tuple[optuna.samplers.BaseSampler, dict[str, Any]]:
    """The sampler `drltune search` runs, and its arguments: every trial samples with its own seeded
    sampler (seeding.py); `wrap` lets the search benchmark try a variant of that inner sampler."""
    from drltune.search.seeding import TrialSeededSampler

    _, args = make_sampler(name, seed, n_trials, space)

    def make(trial_seed: int) -> optuna.samplers.BaseSampler:
        inner = make_sampler(name, trial_seed, n_trials, space)[0]
        return inner if wrap is None else wrap(inner)

    return TrialSeededSampler(make, seed), {**args, "seed_per_trial": True}
