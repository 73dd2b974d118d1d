"""Where a study lives: the one place that turns a storage URL into an Optuna storage object.

Any SQLAlchemy URL works (`sqlite:///path.db`, `postgresql://host/db`, ...). The default,
`DEFAULT_URL` (storage_url.py), is `studies/drltune.db` under the current directory, so a search
"works from any directory" and keeps its files next to where it was started; a command resolves its
`--storage` once (storage_url.py) and opens it once. A search opens its storage with `open_writer`
(the tables are made when missing); `drltune explore` and notebooks open an existing one with
`open_reader`, which never writes (it also reads Optuna journal files).

A search's storage outlives faults of the database: every call that fails on a transient error
(SQLite busy, a PostgreSQL restart or dropped connection) is retried with back-off for up to
`DRLTUNE_STORAGE_PATIENCE_S` seconds (default and most `MAX_PATIENCE_S`, 70), then
`StorageUnavailable` says so in one line. The patience is bounded by the heartbeat's grace: a
driver gives up on the storage (and stops its trials) before other drivers call it dead.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
import tempfile
import time
import uuid
import warnings
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable, Sequence

import optuna
from filelock import FileLock
from optuna.exceptions import StorageInternalError, UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState
from sqlalchemy import func, select, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import (
    ArgumentError,
    DisconnectionError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    ProgrammingError,
    SQLAlchemyError,
)
from sqlalchemy.orm import selectinload

from drltune.errors import DrltuneError, RuntimeFailure, first_line
from drltune.search.optuna_private import (
    RDB_PRIVATE_ROUND_TRIPS,
    prepared_new_trial,
    rdb_session,
    set_trial_attr_in_session,
    set_trial_id,
    set_trial_value_in_session,
)
from drltune.search.optuna_private import rdb_models as models

SCHEMA_RACE_RETRIES = 3
PATIENCE_ENV = "DRLTUNE_STORAGE_PATIENCE_S"
HEARTBEAT_S = 10  # Optuna's heartbeat: each running trial's row is refreshed this often ...
GRACE_S = (
    90  # ... and a trial whose heartbeat is older than this (on the database's clock) is stale
)
HALT_S = GRACE_S - HEARTBEAT_S  # a driver that could not beat for this long stops its trials ...
MAX_PATIENCE_S = float(
    HALT_S - HEARTBEAT_S
)  # ... as does one whose beat, due up to HEARTBEAT_S after
# its last, outlasted the patience: either way before the others' grace runs out
STATE_CHANGE_ATTR = (
    "drltune:state_change"  # trial system attr: the token of the state change that won
)
# trial system attr: set on a cut trial in the transaction that queues its retry
RETRIED_ATTR = "drltune:retried"


class StorageUnavailable(RuntimeFailure):
    """The storage kept failing for longer than the patience: the search stops (and resumes
    later)."""


class AlreadyQueued(DrltuneError):
    """Another driver (or an earlier try of this call) queued this trial's retry first."""


def _is_transient(exc: BaseException) -> bool:
    """A lost connection or a busy database (worth retrying), as opposed to a bad request."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (OperationalError, InterfaceError, DisconnectionError)):
            return True
        if getattr(seen, "connection_invalidated", False):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def patience_s() -> float:
    """How long a storage call retries: DRLTUNE_STORAGE_PATIENCE_S, at most MAX_PATIENCE_S (waiting
    longer, a driver would still be writing to trials that others have retried)."""
    return min(float(os.environ.get(PATIENCE_ENV, MAX_PATIENCE_S)), MAX_PATIENCE_S)


def _retrying(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(self: "ResilientRDBStorage", *args: Any, **kwargs: Any) -> Any:
        deadline, delay = time.monotonic() + patience_s(), 0.5
        while True:
            try:
                return method(self, *args, **kwargs)
            except (StorageInternalError, SQLAlchemyError) as exc:
                if not _is_transient(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    first = first_line(exc.__cause__ or exc)
                    raise StorageUnavailable(
                        f"storage {display_url(self.url)} unreachable for "
                        f"{patience_s():.0f} s ({first})"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 10.0)

    return call


class _Lost(Exception):
    """A state change that another writer won (raised inside the transaction to roll it back)."""

    def __init__(self, read: TrialState) -> None:
        super().__init__(read.name)
        self.read = read


class ResilientRDBStorage(optuna.storages.RDBStorage):
    """Optuna's RDBStorage with every database round trip retried on transient errors.

    The methods wrapped are the ones that talk to the database (Optuna's cache wrapper calls the
    private ones); public methods that only delegate to them are left alone, so retries never nest.
    """

    #: User attributes written in the same transaction as each trial `study.ask()` creates (the
    #: driver's id): a driver cut off between creating a trial and claiming it leaves no trial
    #: that nobody owns.
    new_trial_user_attrs: dict[str, Any] = {}

    def _create_new_trial(
        self, study_id: int, template_trial: FrozenTrial | None = None
    ) -> FrozenTrial:
        if template_trial is None and self.new_trial_user_attrs:
            template_trial = FrozenTrial(
                number=-1,
                state=TrialState.RUNNING,
                value=None,
                values=None,
                datetime_start=datetime.now(),
                datetime_complete=None,
                params={},
                distributions={},
                user_attrs=dict(self.new_trial_user_attrs),
                system_attrs={},
                intermediate_values={},
                trial_id=-1,
            )
        history = (
            template_trial.system_attrs.get("retry_history") if template_trial is not None else None
        )
        if not history or template_trial is None or template_trial.state != TrialState.WAITING:
            return super()._create_new_trial(study_id, template_trial)
        return self._create_retry(study_id, template_trial, history[-1])

    def _create_retry(self, study_id: int, template_trial: FrozenTrial, parent: int) -> FrozenTrial:
        """Queue the retry of trial number `parent` once: its RETRIED_ATTR (unique per trial) is
        inserted in the same transaction, so a driver retiring the trial and drivers resuming
        (`requeue_lost`) at the same moment queue one retry between them; the others get
        AlreadyQueued. (Optuna's insert-or-update of attrs would let both pass.)"""
        try:
            with rdb_session(self) as session:
                models.StudyModel.find_or_raise_by_id(
                    study_id, session, for_update=True
                )  # numbers, as Optuna
                parent_id = (
                    session.query(models.TrialModel.trial_id)
                    .filter(
                        models.TrialModel.study_id == study_id, models.TrialModel.number == parent
                    )
                    .scalar()
                )
                session.add(
                    models.TrialSystemAttributeModel(
                        trial_id=parent_id, key=RETRIED_ATTR, value_json=json.dumps(True)
                    )
                )
                session.flush()
                trial = prepared_new_trial(self, study_id, template_trial, session)
                frozen = copy.deepcopy(template_trial)  # as Optuna's _create_new_trial returns it
                frozen.number, frozen.datetime_start = trial.number, trial.datetime_start
                set_trial_id(frozen, trial.trial_id)
                return frozen
        except IntegrityError:
            raise AlreadyQueued(f"the retry of trial #{parent} is queued already") from None

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        """Optuna's, as a change only one writer can win (see `change_trial_state`)."""
        return self.change_trial_state(trial_id, state, values)

    def change_trial_state(
        self,
        trial_id: int,
        state: TrialState,
        values: Sequence[float] | None = None,
        user_attrs: dict[str, Any] | None = None,
    ) -> bool:
        """Set the state (and values, and `user_attrs`) of a trial in one transaction that only one
        writer can win.

        Optuna reads the row and then writes it (its FOR UPDATE is a no-op on SQLite), so two
        drivers retiring one trial both "won", and an owner's COMPLETE could land on top of another
        driver's FAIL. Here the state changes by `UPDATE ... WHERE state = <the state read>`,
        checked by its row count. The loser gets UpdateFinishedTrialError (False for a WAITING ->
        RUNNING pop, as in Optuna) and none of its writes. Each change carries a token (a trial
        system attr written in the same transaction): a retry after a dropped connection knows its
        own commit from another driver's."""
        return self._change_state(trial_id, state, values, user_attrs or {}, uuid.uuid4().hex)

    def _change_state(
        self,
        trial_id: int,
        state: TrialState,
        values: Sequence[float] | None,
        user_attrs: dict[str, Any],
        token: str,
    ) -> bool:
        try:
            with rdb_session(self) as session:
                trial = models.TrialModel.find_or_raise_by_id(trial_id, session, for_update=True)
                read = trial.state
                if not read.is_finished() and (
                    state != TrialState.RUNNING or read == TrialState.WAITING
                ):
                    for objective, value in enumerate(values or ()):
                        set_trial_value_in_session(self, session, trial, objective, value)
                    for key, value in user_attrs.items():
                        set_trial_attr_in_session(
                            self, session, models.TrialUserAttributeModel, trial_id, key, value
                        )
                    set_trial_attr_in_session(
                        self,
                        session,
                        models.TrialSystemAttributeModel,
                        trial_id,
                        STATE_CHANGE_ATTR,
                        token,
                    )
                    changes: dict[str, Any] = {"state": state}
                    if state == TrialState.RUNNING:
                        changes["datetime_start"] = datetime.now()
                    if state.is_finished():
                        changes["datetime_complete"] = datetime.now()
                    done = session.execute(
                        update(models.TrialModel)
                        .where(
                            models.TrialModel.trial_id == trial_id, models.TrialModel.state == read
                        )
                        .values(**changes)
                        .execution_options(synchronize_session=False)
                    )
                    if done.rowcount == 1:
                        return True
                raise _Lost(read)  # rolls back everything this transaction wrote
        except IntegrityError:
            return False
        except _Lost as lost:
            with rdb_session(self) as session:
                mine = (
                    session.query(models.TrialSystemAttributeModel.value_json)
                    .filter(
                        models.TrialSystemAttributeModel.trial_id == trial_id,
                        models.TrialSystemAttributeModel.key == STATE_CHANGE_ATTR,
                    )
                    .scalar()
                )
                now = (
                    session.query(models.TrialModel)
                    .filter(models.TrialModel.trial_id == trial_id)
                    .one()
                )
                number, now_state = now.number, now.state
            if mine is not None and json.loads(mine) == token:
                return True  # this call's earlier attempt landed before its connection dropped
            if state == TrialState.RUNNING and not now_state.is_finished():
                return False  # another driver popped this WAITING trial first
            raise UpdateFinishedTrialError(
                f"Trial#{number} is already {now_state.name} (read {lost.read.name}): another "
                f"writer changed its state first; {state.name} not written"
            ) from None

    def setdefault_study_system_attr(self, study_id: int, key: str, value: Any) -> Any:
        """The study's system attr `key`, `value` written first when it has none; drivers racing to
        write it all get the first one's (the key is unique: a later insert fails and is
        dropped)."""
        try:
            with rdb_session(self) as session:
                study = models.StudyModel.find_or_raise_by_id(study_id, session)
                if (
                    models.StudySystemAttributeModel.find_by_study_and_key(study, key, session)
                    is None
                ):
                    session.add(
                        models.StudySystemAttributeModel(
                            study_id=study_id, key=key, value_json=json.dumps(value)
                        )
                    )
        except IntegrityError:
            pass
        with rdb_session(self) as session:
            study = models.StudyModel.find_or_raise_by_id(study_id, session)
            attr = models.StudySystemAttributeModel.find_by_study_and_key(study, key, session)
            assert attr is not None  # written above, by this driver or the one that won the race
            return json.loads(attr.value_json)

    def _utc_now(self) -> Any:
        """The database's clock in UTC, as SQL (the heartbeat column has no time zone).

        Optuna stamps heartbeats with now(), which PostgreSQL renders in each session's TimeZone:
        drivers whose sessions differ (PGTZ, `SET TIME ZONE`) saw each other's heartbeats as hours
        old. SQLite's CURRENT_TIMESTAMP is UTC of the writing process's clock: a SQLite file is
        shared through one machine's clock (or clocks kept in step)."""
        dialect = self.engine.dialect.name
        if dialect == "postgresql":
            return func.timezone("UTC", func.now())
        if dialect in ("mysql", "mariadb"):
            return func.utc_timestamp()
        return func.current_timestamp()

    def record_heartbeat(self, trial_id: int) -> None:
        """Optuna's, stamped with the database's UTC clock (see `_utc_now`)."""
        with rdb_session(self, True) as session:
            heartbeat = models.TrialHeartbeatModel.where_trial_id(trial_id, session, True)
            if heartbeat is None:
                session.add(
                    models.TrialHeartbeatModel(trial_id=trial_id, heartbeat=self._utc_now())
                )
            else:
                heartbeat.heartbeat = self._utc_now()

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        """Optuna's, on the database's UTC clock (see `_utc_now`)."""
        assert self.heartbeat_interval is not None
        grace = timedelta(
            seconds=self.grace_period
            if self.grace_period is not None
            else 2 * self.heartbeat_interval
        )
        with rdb_session(self, True) as session:
            now = session.execute(select(self._utc_now())).scalar_one()
            heartbeat = models.TrialHeartbeatModel
            beats = (
                session.query(models.TrialModel.trial_id, heartbeat.heartbeat)
                .join(heartbeat, heartbeat.trial_id == models.TrialModel.trial_id)
                .filter(
                    models.TrialModel.state == TrialState.RUNNING,
                    models.TrialModel.study_id == study_id,
                )
                .all()
            )
            return [trial_id for trial_id, beat in beats if now - beat > grace]

    def running_trial_ids_without_heartbeat(self, study_id: int) -> set[int]:
        """RUNNING trials that never recorded a heartbeat (their driver never claimed them)."""
        with rdb_session(self) as session:
            running = (
                session.query(models.TrialModel)
                .options(selectinload(models.TrialModel.heartbeats))
                .filter(
                    models.TrialModel.state == TrialState.RUNNING,
                    models.TrialModel.study_id == study_id,
                )
                .all()
            )
            return {t.trial_id for t in running if not t.heartbeats}


for _name in RDB_PRIVATE_ROUND_TRIPS + (
    "running_trial_ids_without_heartbeat",
    "setdefault_study_system_attr",
    "create_new_study",
    "delete_study",
    "get_all_studies",
    "get_study_directions",
    "get_study_id_from_name",
    "get_study_name_from_id",
    "get_study_system_attrs",
    "get_study_user_attrs",
    "get_trial",
    "get_trial_id_from_study_id_trial_number",
    "get_trial_user_attrs",
    "get_trial_system_attrs",
    "get_trial_param",
    "record_heartbeat",
    "set_study_system_attr",
    "set_study_user_attr",
    "set_trial_intermediate_value",
    "_change_state",
    "set_trial_system_attr",
    "set_trial_user_attr",
):
    setattr(ResilientRDBStorage, _name, _retrying(getattr(ResilientRDBStorage, _name)))


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser()


def display_url(url: str) -> str:
    """The URL with any password masked, for printing (never print credentials)."""
    return make_url(url).render_as_string(hide_password=True)


# The package a storage URL's missing driver module comes from (SQLAlchemy names the module only).
DRIVER_PACKAGES = {
    "MySQLdb": "mysqlclient",
    "pymysql": "pymysql",
    "mysql": "mysql-connector-python",
    "psycopg2": "psycopg2-binary",
    "psycopg": "'psycopg[binary]'",
    "pg8000": "pg8000",
}


def cause_text(exc: BaseException) -> str:
    """The real cause of a storage error in one line: the driver's own message
    (`Connection refused`) instead of Optuna's wrapper ("invalid data in the commit"), or the
    package a missing driver needs."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ModuleNotFoundError) and seen.name:
            top = seen.name.split(".")[0]
            package = DRIVER_PACKAGES.get(top, top)
            return (
                f"its database driver is not installed (no module {top!r}): pip install {package}"
            )
        if isinstance(seen, (OperationalError, InterfaceError, DisconnectionError)):
            return first_line(getattr(seen, "orig", None) or seen)
        seen = seen.__cause__ or seen.__context__
    return first_line(exc)


def shown(storage: str) -> str:
    """A storage as printed: a URL's password masked (never print credentials)."""
    return display_url(storage) if "://" in storage else storage


def database_file(storage: str) -> Path | None:
    """The file a storage reads: a journal path, a SQLite URL's database, or None (a server)."""
    if "://" not in storage:
        return Path(storage).expanduser()
    try:
        return sqlite_path(storage)
    except ArgumentError:
        raise DrltuneError(f"storage: {storage!r} is not a database URL") from None


def _existing_file(storage: str) -> Path | None:
    """The file a storage reads (None: a server), which must exist: opening never makes one here."""
    path = database_file(storage)
    if path is not None and not path.is_file():
        raise DrltuneError(
            f"storage: {path} does not exist (no search has written to {shown(storage)})"
        )
    return path


def _open_existing(storage: str) -> optuna.storages.BaseStorage:
    """An existing storage (a URL or a journal file path), opened without creating anything."""
    path = _existing_file(storage)
    if "://" not in storage:
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        return JournalStorage(JournalFileBackend(str(path)))
    # A running search writes to the same SQLite file: wait for its lock instead of failing.
    engine_kwargs = {"connect_args": {"timeout": 30}} if path is not None else {}
    try:
        return optuna.storages.RDBStorage(
            storage, engine_kwargs=engine_kwargs, skip_table_creation=True
        )
    except Exception as exc:  # SQLAlchemy / driver errors: report the cause, one line
        raise RuntimeFailure(f"storage: cannot open {shown(storage)}: {cause_text(exc)}") from None


def open_reader(url: str) -> optuna.storages.BaseStorage:
    """An existing storage for reading (explore, export, studies, dashboard): never created, never
    written by us; `url` (resolved, see storage_url.py) may also be an Optuna journal file."""
    return _open_existing(url)


def open_writer(
    url: str, heartbeat: bool = False, create: bool = True
) -> optuna.storages.BaseStorage:
    """A storage for writing, every round trip retried on transient errors (see the module
    docstring), with `heartbeat` Optuna's trial heartbeats (liveness judged on the database's
    clock).

    `create` (a search): the tables (and SQLite file and folder) are made when missing. Without it
    (verify, studies --delete): the storage must exist already, and a journal file is written
    through Optuna's journal storage."""
    if "://" not in url:
        if create:
            raise DrltuneError(
                f"{url}: not a database URL; a search writes to a database (e.g. "
                "sqlite:///studies/drltune.db or postgresql://user@host/db), a journal file is "
                "only read"
            )
        return _open_existing(url)
    path = sqlite_path(url) if create else _existing_file(url)
    engine_kwargs: dict[str, Any] = {
        "pool_pre_ping": True
    }  # a connection that died with the server is replaced
    kwargs: dict[str, Any] = (
        {"heartbeat_interval": HEARTBEAT_S, "grace_period": GRACE_S} if heartbeat else {}
    )
    if not create:
        kwargs["skip_table_creation"] = True
    lock = None
    if path is not None:
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise DrltuneError(f"cannot create {path.parent}: {exc.strerror}") from None
        # The dashboard may read while the driver writes: wait for the lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 30}}
        # Drivers opening a new file at the same moment race to create Optuna's tables: one at a
        # time (the lock file lives in the temp folder, so a study's folder holds only what the user
        # made).
        digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:16]
        lock = FileLock(os.path.join(tempfile.gettempdir(), f"drltune-sqlite-{digest}.lock"))
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                if lock is None:
                    return ResilientRDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
                with lock:
                    return ResilientRDBStorage(url, engine_kwargs=engine_kwargs, **kwargs)
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            # Several drivers opening an empty database at once race to create Optuna's tables
            # (duplicate key / table exists / database is locked): the loser retries.
            racing = not isinstance(exc, OperationalError) or "locked" in str(exc)
            if not racing or attempt == SCHEMA_RACE_RETRIES:
                raise RuntimeFailure(
                    f"cannot open storage {display_url(url)}: {cause_text(exc)}"
                ) from None
            time.sleep(0.5 + attempt)
        except (SQLAlchemyError, ImportError, ValueError, RuntimeError) as exc:
            raise RuntimeFailure(
                f"cannot open storage {display_url(url)}: {cause_text(exc)}"
            ) from None
    raise AssertionError("unreachable")


def open_storage(
    url: str, heartbeat: bool = False, create: bool = True
) -> optuna.storages.BaseStorage:
    """`open_writer(url, heartbeat)` with `create`, else `open_reader(url)` (tests and
    benchmarks)."""
    return open_writer(url, heartbeat=heartbeat) if create else open_reader(url)
