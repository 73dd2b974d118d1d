"""Re-init-aware pruning: DR's accuracy dips right after a re-initialisation, then climbs above.

A pruner that compares raw per-epoch accuracy kills exactly the trials DR is meant to help.
`ReinitAwarePruner` wraps any Optuna pruner and changes what it sees, not how it decides:

* every trial's intermediate values are shown to it as *best so far* (a running maximum), so a
  dip never lowers a trial's standing (the storage keeps the raw values for the dashboard);
* within a grace window after a re-init (half the re-init interval, at least `min_grace` epochs)
  the trial is not judged at all;
* the final step is never pruned: the trial has already paid for its whole budget.

A trial tells the pruner its re-inits through the user attribute `reinit_epochs` (0-based epochs).
"""
from __future__ import annotations

import copy
import math
from typing import Any

import optuna
from optuna.pruners import BasePruner
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from drltune.errors import DrltuneError

PRUNERS = ("hyperband", "median", "sha", "none")
REINIT_ATTR = "reinit_epochs"


def running_best(trial: FrozenTrial, direction: StudyDirection) -> FrozenTrial:
    """A copy of `trial` whose intermediate values are the best value reached up to each step."""
    pick = max if direction == StudyDirection.MAXIMIZE else min
    best, out = None, {}
    for step in sorted(trial.intermediate_values):
        value = trial.intermediate_values[step]
        if not math.isnan(value):
            best = value if best is None else pick(best, value)
        out[step] = value if best is None else best
    view = copy.copy(trial)
    view.intermediate_values = out
    return view


class _RunningBestStorage:
    """Delegates to a storage; trials read through it carry running-best intermediate values.

    Optuna's pruners read other trials through `study.get_trials` or, for Hyperband's bracket
    studies, straight from `study._storage`: wrapping the storage covers both. Writes (the rung
    values SuccessiveHalving records) go to the real storage.
    """

    def __init__(self, storage: optuna.storages.BaseStorage, direction: StudyDirection) -> None:
        self._storage = storage
        self._direction = direction

    def __getattr__(self, name: str) -> Any:
        return getattr(self._storage, name)

    def get_all_trials(self, study_id: int, deepcopy: bool = True, states: Any = None) -> list[FrozenTrial]:
        trials = self._storage.get_all_trials(study_id, deepcopy=False, states=states)
        return [running_best(t, self._direction) for t in trials]

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return running_best(self._storage.get_trial(trial_id), self._direction)


class ReinitAwarePruner(BasePruner):
    """Wrap `inner` so that it judges best-so-far values, never right after a re-init or at the end."""

    def __init__(self, inner: BasePruner, final_step: int, min_grace: int = 2) -> None:
        self.inner = inner
        self.final_step = final_step
        self.min_grace = min_grace
        self._views: dict[str, optuna.Study] = {}

    def grace(self, reinits: list[int]) -> int:
        """Half the re-init interval (DR re-inits at multiples of it, so the first one is the interval)."""
        interval = min(b - a for a, b in zip([0, *reinits], reinits)) if reinits else 0
        return max(self.min_grace, math.ceil(interval / 2))

    def in_grace(self, trial: FrozenTrial, step: int) -> bool:
        reinits = sorted(int(e) for e in trial.user_attrs.get(REINIT_ATTR, ()))
        window = self.grace(reinits)
        return any(r < step <= r + window for r in reinits)

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step >= self.final_step or self.in_grace(trial, step):
            return False
        return self.inner.prune(self._view(study), running_best(trial, study.direction))

    def _view(self, study: optuna.Study) -> optuna.Study:
        """The same study (name, id, sampler) read through the running-best storage."""
        view = self._views.get(study.study_name)
        if view is None:
            storage = _RunningBestStorage(study._storage, study.direction)
            view = optuna.Study(study_name=study.study_name, storage=storage,  # type: ignore[arg-type]
                                sampler=study.sampler, pruner=self.inner)
            self._views[study.study_name] = view
        return view


def make_pruner(name: str, max_epochs: int, n_trials: int) -> tuple[ReinitAwarePruner, dict[str, Any]]:
    """The wrapped pruner for `--pruner NAME` and the arguments it was built with (stored on the study).

    Steps are 0-based epochs. Rungs and warm-up are set from the budget so that small searches
    (8 epochs, 16 trials) prune too; Hyperband gets `max_resource` explicitly (never "auto").
    """
    if name == "median":
        args = {"n_startup_trials": max(2, min(5, n_trials // 5)), "n_warmup_steps": max(1, max_epochs // 4)}
        inner: BasePruner = optuna.pruners.MedianPruner(**args)
    elif name == "sha":
        args = {"min_resource": max(1, max_epochs // 8), "reduction_factor": 3}
        inner = optuna.pruners.SuccessiveHalvingPruner(**args)
    elif name == "hyperband":
        args = {"min_resource": max(1, max_epochs // 8), "max_resource": max_epochs, "reduction_factor": 3}
        inner = optuna.pruners.HyperbandPruner(**args)
    elif name == "none":
        args, inner = {}, optuna.pruners.NopPruner()
    else:
        raise DrltuneError(f"--pruner {name!r}: valid: {', '.join(PRUNERS)}")
    return ReinitAwarePruner(inner, final_step=max_epochs - 1), {"name": name, **args, "reinit_aware": True}
