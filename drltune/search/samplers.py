"""The Optuna sampler behind `--sampler`; every argument explicit, so a study records what it ran with."""
from __future__ import annotations

import warnings
from typing import Any

import optuna

from drltune.errors import DrltuneError

SAMPLERS = ("tpe", "random", "gp")


def make_sampler(name: str, seed: int, n_trials: int) -> tuple[optuna.samplers.BaseSampler, dict[str, Any]]:
    """The sampler and its arguments. TPE models each method's branch jointly (`group`) and, with
    `constant_liar`, steers away from configurations that are still running."""
    n_startup = max(4, min(10, n_trials // 4))
    if name == "tpe":
        args = {"seed": seed, "n_startup_trials": n_startup, "multivariate": True, "group": True,
                "constant_liar": True}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler: optuna.samplers.BaseSampler = optuna.samplers.TPESampler(**args)
    elif name == "random":
        args = {"seed": seed}
        sampler = optuna.samplers.RandomSampler(**args)
    elif name == "gp":
        args = {"seed": seed, "n_startup_trials": n_startup}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.GPSampler(**args)
    else:
        raise DrltuneError(f"--sampler {name!r}: valid: {', '.join(SAMPLERS)}")
    return sampler, {"name": name, **args}
