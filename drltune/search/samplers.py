"""The Optuna sampler behind `--sampler`; every argument explicit, so a study records what it ran with."""
from __future__ import annotations

import warnings
from collections.abc import Container, Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune.errors import DrltuneError

if TYPE_CHECKING:
    from drltune.search.space import SearchSpace

SAMPLERS = ("tpe", "random", "gp")


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
        raise DrltuneError(f"--sampler gp cannot model a conditional space (method parameters {shown} exist "
                           "only for their method); use --sampler tpe, or a space with one method")


def make_sampler(name: str, seed: int, n_trials: int,
                 space: SearchSpace | None = None) -> tuple[optuna.samplers.BaseSampler, dict[str, Any]]:
    """The sampler and its arguments. TPE models each method's branch jointly (`group`) and, with
    `constant_liar`, steers away from configurations that are still running (concurrent trials)."""
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
        check_sampler(name, space)
        args = {"seed": seed, "n_startup_trials": n_startup}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.GPSampler(**args)
    else:
        raise DrltuneError(f"--sampler {name!r}: valid: {', '.join(SAMPLERS)}")
    return sampler, {"name": name, **args}


class _ForgivenStudy(optuna.Study):
    """The study as a forgiving sampler sees it: without trials pruned at or before `last_step`."""

    def __init__(self, study: optuna.Study, last_step: int) -> None:
        super().__init__(study_name=study.study_name, storage=study._storage, sampler=study.sampler,
                         pruner=study.pruner)
        self._last_step = last_step

    def _get_trials(self, deepcopy: bool = True, states: Container[TrialState] | None = None,
                    use_cache: bool = False) -> list[FrozenTrial]:
        trials = super()._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if not (t.state == TrialState.PRUNED
                                          and (t.last_step is None or t.last_step <= self._last_step))]


class ForgivingSampler(optuna.samplers.BaseSampler):
    """`inner` (TPE) without the trials pruned at the first verdict (step <= `before_step`).

    TPE ranks every pruned trial below every complete one, so a slow starter cut at the first
    verdict marks its whole region bad; here such a trial is missing data, not a bad result."""

    def __init__(self, inner: optuna.samplers.BaseSampler, before_step: int) -> None:
        self.inner, self.before_step = inner, before_step
        self._views: dict[int, _ForgivenStudy] = {}

    def _view(self, study: optuna.Study) -> optuna.Study:
        key = id(study)
        if key not in self._views or self._views[key]._storage is not study._storage:
            self._views = {key: _ForgivenStudy(study, self.before_step)}
        return self._views[key]

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]) -> dict[str, Any]:
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self.inner.sample_independent(self._view(study), trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()


def search_sampler(name: str, seed: int, n_trials: int, space: SearchSpace | None = None,
                   forgive_before: int | None = None) -> tuple[optuna.samplers.BaseSampler, dict[str, Any]]:
    """The sampler `drltune search` runs: every trial samples with its own seeded sampler
    (seeding.py), behind a `ForgivingSampler` when `forgive_before` is given; and its arguments."""
    from drltune.search.seeding import TrialSeededSampler

    _, args = make_sampler(name, seed, n_trials, space)

    def make(trial_seed: int) -> optuna.samplers.BaseSampler:
        inner = make_sampler(name, trial_seed, n_trials, space)[0]
        return inner if forgive_before is None else ForgivingSampler(inner, forgive_before)

    args = {**args, "seed_per_trial": True}
    if forgive_before is not None:
        args["forgive_pruned_at_or_before_step"] = forgive_before
    return TrialSeededSampler(make, seed), args

