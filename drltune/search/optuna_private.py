"""Every private Optuna and optuna-dashboard name drltune touches, in one place.

Optuna has no public way to reach a study's storage and ids, to run SQL in its own session,
or to write a dashboard Note in O(1); drltune needs all of them. Keeping them here means one
release that renames one of them breaks one module, and `tests/test_optuna_private.py` says
which name went missing (pyproject.toml pins the major versions it was tested with).

Subclasses that override a private method (`ResilientRDBStorage`, the Hyperband bracket
study) name the method in their class body; the names they override are listed in
`OVERRIDDEN` so the same test checks they still exist.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import optuna
from optuna.storages._rdb import models as _rdb_models
from optuna.storages._rdb.storage import _create_scoped_session
from optuna.study._frozen import FrozenStudy  # what storages list; Optuna does not export it
from optuna.trial import FrozenTrial

rdb_models = _rdb_models  # Optuna's ORM tables, for drltune's own SQL in its session

#: (class, private method) pairs that drltune's subclasses override (and call through `super()`).
OVERRIDDEN: tuple[tuple[type, str], ...] = (
    (optuna.storages.RDBStorage, "_create_new_trial"),
    (optuna.storages.RDBStorage, "_get_stale_trial_ids"),
    (optuna.Study, "_get_trials"),
    (optuna.pruners.HyperbandPruner, "_create_bracket_study"),
)

#: RDBStorage's private methods that talk to the database (Optuna's cache wrapper calls them):
#: `ResilientRDBStorage` wraps each in its retry.
RDB_PRIVATE_ROUND_TRIPS: tuple[str, ...] = (
    "_create_new_trial",
    "_get_best_trial_id",
    "_get_stale_trial_ids",
    "_get_trials",
    "_set_trial_param",
)


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage object a study talks to (Optuna's cache wrapper, for an RDB storage)."""
    return study._storage


def backend_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage under Optuna's cache wrapper (the study's storage itself when unwrapped)."""
    return getattr(study._storage, "_backend", study._storage)


def study_id_of(study: optuna.Study | FrozenStudy) -> int:
    """The study's id in its storage (not its name: the key every storage call takes)."""
    return study._study_id


def trial_id_of(trial: FrozenTrial | optuna.Trial) -> int:
    """A trial's id in its storage (unique across studies, unlike `number`)."""
    return trial._trial_id


def set_trial_id(trial: FrozenTrial, trial_id: int) -> None:
    """Give a FrozenTrial built by hand the id its row got (as Optuna's own creation does)."""
    trial._trial_id = trial_id


def stale_trial_ids(study: optuna.Study) -> list[int]:
    """RUNNING trials whose heartbeat is older than the grace, by the database's clock."""
    storage: Any = study._storage  # RDBStorage or its cache wrapper: both have it
    return storage._get_stale_trial_ids(study._study_id)


@contextlib.contextmanager
def rdb_session(
    storage: optuna.storages.RDBStorage, ignore_integrity_error: bool = False
) -> Iterator[Any]:
    """A SQLAlchemy session on the storage's engine, committed on success, rolled back on error
    (Optuna's own; it turns SQLAlchemy's errors into Optuna's)."""
    with _create_scoped_session(storage.scoped_session, ignore_integrity_error) as session:
        yield session


def dashboard_note_keys(trial_id: int | None, body: str) -> tuple[str, dict[str, str]]:
    """The study system attributes optuna-dashboard reads a Note from: its version key and the
    body's chunks by key."""
    from optuna_dashboard._note import note_ver_key, split_body

    return note_ver_key(trial_id), split_body(body, trial_id)


def prepared_new_trial(
    storage: optuna.storages.RDBStorage, study_id: int, template: FrozenTrial | None, session: Any
) -> Any:
    """Insert a new trial row (numbered as Optuna numbers them) inside `session`, uncommitted."""
    return storage._get_prepared_new_trial(study_id, template, session)


def set_trial_attr_in_session(
    storage: optuna.storages.RDBStorage,
    session: Any,
    model: type,
    trial_id: int,
    key: str,
    value: Any,
) -> None:
    """Write one trial user/system attribute inside `session`, uncommitted (Optuna's upsert)."""
    storage._set_trial_attr_without_commit(session, model, trial_id, key, value)


def set_trial_value_in_session(
    storage: optuna.storages.RDBStorage, session: Any, trial: Any, objective: int, value: float
) -> None:
    """Write one objective value of a trial row inside `session`, uncommitted."""
    storage._set_trial_value_without_commit(session, trial, objective, value)
