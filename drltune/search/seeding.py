"""A sampler whose randomness belongs to each trial, not to the driver that asks.

Two drivers that join one study with the same `--seed` would otherwise draw the same start-up
configurations (TPE samples at random before it models). Here every trial's sampling uses its own
sampler seeded from (seed, trial number): trial numbers are unique across drivers, so drivers
propose different configurations, and one driver alone is as reproducible as before.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState


def trial_seed(seed: int, number: int) -> int:
    return int(np.random.SeedSequence([seed, number]).generate_state(1)[0])


class TrialSeededSampler(BaseSampler):
    """Delegates to `make(trial_seed(seed, trial.number))`, one inner sampler per trial."""

    def __init__(self, make: Callable[[int], BaseSampler], seed: int) -> None:
        self.make, self.seed = make, seed
        self._number: int | None = None
        self._inner = make(seed)

    def _for(self, trial: FrozenTrial) -> BaseSampler:
        if trial.number != self._number:
            self._number, self._inner = trial.number, self.make(trial_seed(self.seed, trial.number))
        return self._inner

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        return self._for(trial).infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self._for(trial).sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._for(trial).sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self._for(trial).before_trial(study, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._inner.after_trial(study, trial, state, values)  # the trial's own sampler may be gone

    def reseed_rng(self) -> None:
        self._inner.reseed_rng()
