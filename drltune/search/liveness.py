"""Several drivers on one study: who is alive, and how many trials the study still needs.

Liveness is Optuna's: the driver records a heartbeat for each trial it runs
(`RDBStorage.record_heartbeat`, stamped with the database server's clock in UTC, whatever each
session's time zone) and a RUNNING trial whose heartbeat is older than the grace period is stale
(`_get_stale_trial_ids`, same clock, so machines' clocks never meet; a SQLite file is shared
through one machine's clock). What Optuna lacks is kept here: each trial carries its driver's
unique id (`driver`: host:pid:token) and process namespace (`driver_ns`), so that a driver that
died on this machine is known at once (its PID is gone) instead of after the grace period. The id
is written with the trial itself; a trial that never got a heartbeat (its driver was cut off right
after asking) is stale once this driver has watched it for ORPHAN_S. Stale trials are retired
(study.retire: FAIL, then retried); a driver never retires its own trials.

`--trials` counts the study's total of COMPLETE and PRUNED trials: a driver asks for a new trial
only while those plus live running trials (of every driver) are fewer than `--trials`, and after
asking it checks its place (trial numbers are allocated by the database): a trial beyond the
budget is closed at once as "not run" (FAIL with `not_run`, never queued again). So concurrent
drivers never overshoot, and a driver whose last places are held by another driver waits for
them: if that driver dies, its trials are retried here.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from typing import Callable, Iterable, Protocol, runtime_checkable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import FrozenTrial, TrialState

from drltune.record import DRIVER as DRIVER_ATTR
from drltune.record import DRIVER_NS as DRIVER_NS_ATTR
from drltune.record import ERROR, NOT_RUN, NOT_RUN_ERROR
from drltune.search.optuna_private import (
    backend_of,
    stale_trial_ids,
    storage_of,
    study_id_of,
    trial_id_of,
)
from drltune.search.storage import (
    GRACE_S,
    HALT_S,
    HEARTBEAT_S,
    ResilientRDBStorage,
    StorageUnavailable,
)
from drltune.search.study import FINISHED_OK, retire

RECHECK_S = 2.0
ORPHAN_S = (
    3 * GRACE_S
)  # a RUNNING trial never claimed by any driver, as long as this process has watched it
# (storage URL, trial id) -> when this process first saw it unclaimed: trial ids restart with every
# database, so one process watching two (a notebook, the test suite) must not mix their trials up.
_first_seen_unclaimed: dict[tuple[str, int], float] = {}
_TOKEN = uuid.uuid4().hex[:8]


def driver_id() -> str:
    """Unique per driver process, even between containers that share a host name and PIDs."""
    return f"{socket.gethostname()}:{os.getpid()}:{_TOKEN}"


def process_namespace() -> str:
    """Kernel boot and PID namespace: two processes with the same value see the same PIDs."""
    try:
        boot = open("/proc/sys/kernel/random/boot_id").read().strip()
        return f"{boot}:{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return f"{socket.gethostname()}:unknown"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def died_here(trial: FrozenTrial) -> bool:
    """The trial's driver ran in this PID namespace and its process is gone."""
    if trial.user_attrs.get(DRIVER_NS_ATTR) != process_namespace():
        return False
    pid = str(trial.user_attrs.get(DRIVER_ATTR, "")).split(":")
    return len(pid) >= 2 and pid[1].isdigit() and not _process_exists(int(pid[1]))


def _backend(study: optuna.Study) -> optuna.storages.BaseStorage:
    return backend_of(study)


@runtime_checkable
class _HeartbeatStorage(Protocol):
    """What Optuna's heartbeat storages (RDB, also behind its cache wrapper) add to BaseStorage."""

    def record_heartbeat(self, trial_id: int) -> None: ...


def _heartbeats(study: optuna.Study) -> _HeartbeatStorage:
    storage = storage_of(study)
    assert isinstance(storage, _HeartbeatStorage), f"{type(storage).__name__} records no heartbeats"
    return storage


def _unclaimed(study: optuna.Study, running: list[FrozenTrial]) -> set[int]:
    """RUNNING trials seen without a heartbeat for ORPHAN_S by this process's own clock.

    A driver claims a trial (driver id, first heartbeat) one round trip after asking, or halts
    within its storage patience; a trial that stays unclaimed was left by a driver cut off in
    between. Timed here, so no other machine's clock or time zone is involved."""
    lookup = getattr(_backend(study), "running_trial_ids_without_heartbeat", None)
    if lookup is None:
        return set()
    unbeaten, now = lookup(study_id_of(study)), time.monotonic()
    where = str(getattr(_backend(study), "url", id(_backend(study))))
    for key in list(_first_seen_unclaimed):
        if key[0] == where and key[1] not in unbeaten:
            del _first_seen_unclaimed[key]
    ids = {trial_id_of(t) for t in running if trial_id_of(t) in unbeaten}
    return {i for i in ids if now - _first_seen_unclaimed.setdefault((where, i), now) >= ORPHAN_S}


def stale_trials(study: optuna.Study, me: str | None = None) -> list[FrozenTrial]:
    """RUNNING trials whose driver is gone, or that no driver ever claimed (a trial this driver runs
    is never among them)."""
    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    if not running:
        return []
    by_clock = set(stale_trial_ids(study))
    unclaimed = _unclaimed(study, running)  # this driver's own too: one it runs has a heartbeat
    return [
        t
        for t in running
        if trial_id_of(t) in unclaimed
        or (
            (me is None or t.user_attrs.get(DRIVER_ATTR) != me)
            and (trial_id_of(t) in by_clock or died_here(t))
        )
    ]


def retire_stale(study: optuna.Study, max_retries: int | None, me: str | None = None) -> int:
    """Close stale RUNNING trials as FAIL and queue them again; safe against a second driver
    retiring the same trial (only the one whose FAIL lands queues the retry)."""
    reason = "interrupted: the search driver stopped before this trial finished (retried on resume)"
    return sum(retire(study, trial_id_of(t), reason, max_retries) for t in stale_trials(study, me))


class Heartbeat:
    """A daemon thread that records Optuna heartbeats for the trials this driver runs, and knows
    since when it has failed to. A driver cut off from the storage must stop its trials before
    other drivers retry them: `on_lost` (the bridge's halt) is called once the beats have failed
    for `limit` seconds, or one beat outlasted the storage's patience (see storage.HALT_S)."""

    def __init__(
        self,
        study: optuna.Study,
        live_ids: Callable[[], list[int]],
        every: float = HEARTBEAT_S,
        limit: float = HALT_S,
        on_lost: Callable[[str], None] | None = None,
    ) -> None:
        self.study, self.live_ids, self.every, self.limit = study, live_ids, every, limit
        self.on_lost = on_lost or (lambda reason: None)
        self.last_ok = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drltune-heartbeat", daemon=True)

    def beat(self, trial_ids: Iterable[int]) -> None:
        for trial_id in trial_ids:
            _heartbeats(self.study).record_heartbeat(trial_id)
        self.last_ok = time.monotonic()

    def failing_for(self) -> float:
        return time.monotonic() - self.last_ok

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            cause = None
            try:
                self.beat(self.live_ids())
            except StorageUnavailable as exc:  # the storage's own patience ran out: name that cause
                cause = str(exc)
            except Exception:  # a database outage must not kill the driver; failing_for() tells
                pass
            if cause is None and self.failing_for() > self.limit:
                cause = (
                    f"this driver could not record its heartbeats for {self.failing_for():.0f} s"
                )
            if cause is not None:
                self.on_lost(f"{cause}; its trials were stopped (the same command resumes)")

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class SharedBudget:
    """The study-wide `--trials` budget as seen by one driver."""

    def __init__(self, study: optuna.Study, target: int, max_retries: int | None) -> None:
        self.study, self.target, self.max_retries = study, target, max_retries
        self.driver, self.namespace = driver_id(), process_namespace()
        self._next_check = 0.0
        self.held_by_others: list[int] = []  # running trials of other drivers that fill the budget
        backend = _backend(study)
        if isinstance(backend, ResilientRDBStorage):  # trials this driver asks are born claimed
            backend.new_trial_user_attrs = {
                DRIVER_ATTR: self.driver,
                DRIVER_NS_ATTR: self.namespace,
            }

    def _places(self) -> list[FrozenTrial]:
        """Trials holding a place: COMPLETE and PRUNED ones, and running ones not stale.

        A stale trial gives up its place only once it is retired (FAIL, queued again): its owner,
        back after a storage stall, then finds it finished and drops it, instead of it and its
        replacement both counting. One that could not be retired keeps its place."""
        retire_stale(self.study, self.max_retries, self.driver)
        return self.study.get_trials(deepcopy=False, states=(*FINISHED_OK, TrialState.RUNNING))

    def state(self) -> str:
        """ "done" (the study has its trials), "wait" (places held by running trials), or "open"."""
        if time.monotonic() < self._next_check:
            return "wait"
        if len(self.study.get_trials(deepcopy=False, states=FINISHED_OK)) >= self.target:
            return "done"
        places = self._places()
        if len(places) >= self.target:
            self.held_by_others = [
                t.number
                for t in places
                if t.state == TrialState.RUNNING and t.user_attrs.get(DRIVER_ATTR) != self.driver
            ]
            self._next_check = time.monotonic() + RECHECK_S
            return "wait"
        return "open"

    def claim(self, trial: optuna.Trial) -> bool:
        """Mark a freshly asked trial as ours; False (and the trial closed) when it is past the
        budget."""
        storage = storage_of(self.study)
        storage.set_trial_user_attr(trial_id_of(trial), DRIVER_ATTR, self.driver)
        storage.set_trial_user_attr(trial_id_of(trial), DRIVER_NS_ATTR, self.namespace)
        _heartbeats(self.study).record_heartbeat(trial_id_of(trial))
        ahead = sum(1 for t in self._places() if t.number < trial.number)
        if ahead < self.target:
            return True
        try:
            storage.set_trial_user_attr(
                trial_id_of(trial), NOT_RUN, True
            )  # not `interrupted`: never queued again
            storage.set_trial_user_attr(
                trial_id_of(trial),
                ERROR,
                f"{NOT_RUN_ERROR} the study reached --trials "
                f"{self.target} (another driver was first)",
            )
            self.study.tell(trial, state=TrialState.FAIL)
        except UpdateFinishedTrialError:
            pass
        except (
            ValueError
        ):  # study.tell's "Cannot tell a FAIL trial": another driver closed it first
            if not storage.get_trial(trial_id_of(trial)).state.is_finished():
                raise
        self._next_check = time.monotonic() + RECHECK_S
        return False
