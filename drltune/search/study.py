"""The Optuna study of a search: create or resume it, record what it is, retire cut-off trials.

Study user attributes (the contract `drltune explore/export` reads): dataset, space (the YAML
text), space_file, drltune_version, command, max_epochs, pruner, sampler (+ pruner_args,
sampler_args with every argument). A trial that was still RUNNING when its driver died or was
stopped is closed as FAIL (user attrs `error`, `interrupted`) and queued again by Optuna's
`RetryHeartbeatStaleTrialCallback` (system attrs `failed_trial`, `retry_history`; user attr
`retry_of`), a bounded number of times; the retry resumes from the checkpoint of its lineage
(the first trial of the chain). Only COMPLETE and PRUNED trials count toward `--trials`.
"""

from __future__ import annotations

import copy
import uuid
import warnings
from typing import Any

import optuna
from optuna.exceptions import ExperimentalWarning, UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from drltune import record
from drltune.errors import DrltuneError
from drltune.search.objective import DEFAULT, Objective, parse_objective
from drltune.search.optuna_private import backend_of, storage_of, study_id_of
from drltune.search.storage import RETRIED_ATTR, STATE_CHANGE_ATTR, AlreadyQueued

FINISHED_OK = (TrialState.COMPLETE, TrialState.PRUNED)
STUDY_ID = (
    "drltune:study_id"  # study system attr: this study's own id (its checkpoints' folder and owner)
)


def create_or_resume(
    name: str,
    storage: optuna.storages.BaseStorage,
    sampler: optuna.samplers.BaseSampler,
    pruner: optuna.pruners.BasePruner,
    attrs: dict[str, Any],
    objective: Objective | None = None,
) -> tuple[optuna.Study, bool]:
    """Create the study or resume it (same name); a resumed one must match `attrs` on
    record.RESUME_CHECKED and be searched for the same `objective` (default: val_acc)."""
    objective = objective or parse_objective(DEFAULT)
    existed = name in {
        s.study_name for s in optuna.get_all_study_summaries(storage, include_best_trial=False)
    }
    if (
        existed
    ):  # checked before create_study, whose own refusal of other directions names no metric
        _check_objective(name, optuna.load_study(study_name=name, storage=storage), objective)
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            sampler=sampler,
            pruner=pruner,
            directions=objective.directions,
            load_if_exists=True,
        )
    except ValueError as exc:  # e.g. an existing study with another direction
        raise DrltuneError(f"study {name!r}: {exc}") from None
    if study.directions != objective.directions:
        raise DrltuneError(
            f"study {name!r} exists and does not optimise {objective.describe()}; use another "
            "--study"
        )
    if existed and study.user_attrs:
        for key in record.RESUME_CHECKED:
            old, new = study.user_attrs.get(key), attrs[key]
            if old != new:
                what = (
                    "the search space file changed"
                    if key == record.SPACE
                    else f"{key} was {old!r}, now {new!r}"
                )
                raise DrltuneError(
                    f"study {name!r} cannot be resumed: {what}; use another --study "
                    "(or the original settings)"
                )
    if not existed or not study.user_attrs:
        for key, value in attrs.items():
            study.set_user_attr(key, value)
    # written once the resume is accepted (a refused one writes nothing)
    if (
        study.metric_names != objective.names
    ):  # what optuna-dashboard labels the values (and its Pareto plot) by
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ExperimentalWarning)
            study.set_metric_names(objective.names)
    if study.user_attrs.get(record.OBJECTIVE) is None:
        study.set_user_attr(record.OBJECTIVE, objective.names)
    if not existed:
        study_uid(
            study
        )  # made with the study (one from before ids gets its own in runner.checkpoint_store)
    return study, existed


def _check_objective(name: str, study: optuna.Study, objective: Objective) -> None:
    """A study keeps the objective it began with: its values mean nothing under another."""
    if not study.user_attrs and not study.get_trials(deepcopy=False):
        return  # made but never written to (an interrupted first start): any objective may take it
    stored = study.user_attrs.get(record.OBJECTIVE) or [DEFAULT]
    if stored != objective.names:
        raise DrltuneError(
            f"study {name!r} was searched with --objective {','.join(stored)}, not "
            f"{objective.text}; resume it with --objective {','.join(stored)} or use another "
            "--study"
        )


def study_uid(study: optuna.Study) -> str:
    """The study's own id (uuid4 hex), made once: unlike its name, it tells apart two studies of one
    name in two databases, or a study deleted and made again."""
    backend = backend_of(study)
    if hasattr(backend, "setdefault_study_system_attr"):  # drivers racing to make it agree on one
        return backend.setdefault_study_system_attr(study_id_of(study), STUDY_ID, uuid.uuid4().hex)
    if not has_uid(study):
        storage_of(study).set_study_system_attr(study_id_of(study), STUDY_ID, uuid.uuid4().hex)
    return storage_of(study).get_study_system_attrs(study_id_of(study))[STUDY_ID]


def has_uid(study: optuna.Study) -> bool:
    """False for a study made before studies had ids (until `study_uid` gives it one)."""
    return STUDY_ID in storage_of(study).get_study_system_attrs(study_id_of(study))


def counted(study: optuna.Study) -> int:
    """Trials that count toward --trials: COMPLETE and PRUNED (a failure does not use up the
    budget)."""
    return len(study.get_trials(deepcopy=False, states=FINISHED_OK))


def lineage(trial: FrozenTrial) -> int:
    """The number of the first trial of a retry chain (the trial itself when it is no retry)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        first = RetryHeartbeatStaleTrialCallback.retried_trial_number(trial)
    return trial.number if first is None else int(first)


def attempts(trial: FrozenTrial) -> int:
    """How many earlier trials of its chain were cut off before this one."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        return len(RetryHeartbeatStaleTrialCallback.retry_history(trial))


class _Requeue(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry, for a trial that gets a fresh start: only `retry_of` is carried over (the cut
    trial's own attributes, its error and driver, would mislabel the retry)."""

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        fresh = copy.deepcopy(trial)  # Optuna's callback appends to the trial's retry_history list
        fresh.user_attrs = {record.RETRY_OF: trial.number}
        fresh.system_attrs.pop(STATE_CHANGE_ATTR, None)  # the cut trial's own, not the retry's
        fresh.system_attrs.pop(RETRIED_ATTR, None)
        super().__call__(study, fresh)


def _queue_retry(study: optuna.Study, trial: FrozenTrial) -> bool:
    """Queue the retry of a retired trial; False when another driver queued it first."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        try:
            _Requeue(max_retry=None)(study, trial)
        except AlreadyQueued:
            return False
    return True


def retire(study: optuna.Study, trial_id: int, reason: str, max_retries: int | None) -> bool:
    """Close a cut-off RUNNING trial as FAIL with `reason` and queue it again (at most `max_retries`
    times along its chain; None: always). False when another driver closed it first."""
    storage = storage_of(study)
    trial = storage.get_trial(trial_id)
    if trial.state != TrialState.RUNNING:
        return False
    retried = max_retries is None or attempts(trial) < max_retries
    labels = {
        record.ERROR: reason
        if retried
        else f"{reason}; not retried: cut off {attempts(trial) + 1} times (--max-retries)",
        record.INTERRUPTED: retried,
    }
    backend = backend_of(study)
    try:
        if hasattr(
            backend, "change_trial_state"
        ):  # labels and FAIL in one transaction that one driver wins
            won = backend.change_trial_state(trial_id, TrialState.FAIL, user_attrs=labels)
        else:  # a storage without it (e.g. in memory: one process, no race)
            for key, value in labels.items():
                storage.set_trial_user_attr(trial_id, key, value)
            won = storage.set_trial_state_values(trial_id, TrialState.FAIL)
    except UpdateFinishedTrialError:  # another driver finished or retired it first: its labels stay
        return False
    if not won:
        return False
    if retried:  # only the winner queues the retry (unless a resuming driver was first)
        _queue_retry(study, storage.get_trial(trial_id))
    return True


def requeue_lost(study: optuna.Study) -> int:
    """Queue the retry of every trial retired as `interrupted` whose retry never got queued.

    Retiring is two writes (FAIL, then the queued copy); a driver killed between them left a
    promised retry unqueued, and with it the trial's checkpoint. Run when a search resumes. A trial
    closed unrun past --trials is no interrupted one (`record.is_not_run`, old studies included)."""
    trials = study.get_trials(deepcopy=False)
    queued = {
        t.system_attrs["retry_history"][-1] for t in trials if t.system_attrs.get("retry_history")
    }
    lost = [
        t
        for t in trials
        if t.state == TrialState.FAIL
        and record.is_interrupted(t)
        and t.number not in queued
        and RETRIED_ATTR not in t.system_attrs
    ]
    return sum(
        _queue_retry(study, trial) for trial in lost
    )  # a driver retiring it or resuming too may be first
