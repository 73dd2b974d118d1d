"""The Optuna study of a search: create or resume it, record what it is, retire interrupted trials.

Study user attributes (the contract `drltune explore/export` reads): dataset, space (the YAML
text), space_file, drltune_version, command, max_epochs, pruner, sampler (+ pruner_args,
sampler_args with every argument). A trial that was still RUNNING when its driver died or was
stopped is closed as FAIL (user attrs `error`, `interrupted`) and its parameters are enqueued,
so the next run retries it (liveness.py decides which RUNNING trials are cut off); interrupted
trials do not count toward `--trials`.
"""
from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune.errors import DrltuneError

CHECKED_ATTRS = ("dataset", "max_epochs", "space")


def open_study(name: str, storage: optuna.storages.BaseStorage, sampler: optuna.samplers.BaseSampler,
               pruner: optuna.pruners.BasePruner, attrs: dict[str, Any]) -> tuple[optuna.Study, bool]:
    """Create the study or resume it (same name); a resumed one must match `attrs` on CHECKED_ATTRS."""
    existed = name in {s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)}
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner,
                                    direction="maximize", load_if_exists=True)
    except ValueError as exc:  # e.g. an existing study with another direction
        raise DrltuneError(f"study {name!r}: {exc}") from None
    if study.directions != [optuna.study.StudyDirection.MAXIMIZE]:
        raise DrltuneError(f"study {name!r} exists and does not maximise one value; use another --study")
    if existed and study.user_attrs:
        for key in CHECKED_ATTRS:
            old, new = study.user_attrs.get(key), attrs[key]
            if old != new:
                what = "the search space file changed" if key == "space" else f"{key} was {old!r}, now {new!r}"
                raise DrltuneError(f"study {name!r} cannot be resumed: {what}; use another --study "
                                   "(or the original settings)")
    if not existed or not study.user_attrs:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
    return study, existed


def is_interrupted(trial: FrozenTrial) -> bool:
    return bool(trial.user_attrs.get("interrupted"))


def counted(study: optuna.Study) -> int:
    """Trials that count toward --trials: finished ones (a crash is finished; an interruption is not)."""
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return sum(1 for t in study.get_trials(deepcopy=False, states=done) if not is_interrupted(t))


def retire(study: optuna.Study, trial_id: int, number: int, params: dict[str, Any], reason: str) -> None:
    """Close a cut-off trial as FAIL with `reason` and queue its parameters for a retry."""
    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr("error", reason)
    trial.set_user_attr("interrupted", True)
    study.tell(number, state=TrialState.FAIL)
    study.enqueue_trial(params, user_attrs={"retry_of": number})
