"""Several drivers on one study: who is alive, and how many trials the study still needs.

Each running trial carries the id of the driver that runs it (`driver`: host:pid) and a
`heartbeat` (unix time) that the driver refreshes while the trial runs. A RUNNING trial is
*stale* (its driver is gone) when that driver was on this host and its process no longer
exists, when its heartbeat is older than `GRACE_S`, or when it has no heartbeat at all (a
trial of an older drltune). Stale trials are retired (FAIL, then retried); live ones of other
drivers are left alone.

`--trials` counts the study's total: a driver asks for a new trial only while finished trials
plus live running trials (of every driver) are fewer than `--trials`, and after asking it checks
its place (trial numbers are allocated by the database): a trial beyond the budget is closed at
once as "not run". So concurrent drivers never overshoot, and a driver whose last places are
held by another driver waits for them: if that driver dies, its trials are retried here.
"""
from __future__ import annotations

import os
import socket
import threading
import time
from typing import Callable, Iterable

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune.search.study import counted, is_interrupted, retire

DRIVER_ATTR = "driver"
HEARTBEAT_ATTR = "heartbeat"
HEARTBEAT_S = 10.0
GRACE_S = 90.0
RECHECK_S = 2.0


def driver_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(trial: FrozenTrial, now: float | None = None) -> bool:
    """A RUNNING trial whose driver is gone (see the module docstring)."""
    now = now or time.time()
    beat = trial.user_attrs.get(HEARTBEAT_ATTR)
    if beat is None:  # just asked by a driver that has not marked it yet, or from an older drltune
        started = trial.datetime_start.timestamp() if trial.datetime_start else 0.0
        return now - started > GRACE_S
    host, _, pid = str(trial.user_attrs.get(DRIVER_ATTR, "")).rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and not _process_exists(int(pid)):
        return True
    return now - float(beat) > GRACE_S


def retire_stale(study: optuna.Study) -> int:
    """Close stale RUNNING trials as FAIL and queue their parameters; safe against a second driver
    retiring the same trial (only the one whose FAIL lands enqueues the retry)."""
    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not is_stale(t):
            continue
        try:
            retire(study, t._trial_id, t.number, t.params,
                   "interrupted: the search driver stopped before this trial finished (retried on resume)")
            n += 1
        except (ValueError, RuntimeError):  # another driver finished or retired it first
            pass
    return n


def mark_alive(study: optuna.Study, trial_ids: Iterable[int], driver: str | None = None) -> None:
    storage = study._storage  # the study's own (thread-safe, caching) storage
    now = time.time()
    for trial_id in trial_ids:
        try:
            if driver is not None:
                storage.set_trial_user_attr(trial_id, DRIVER_ATTR, driver)
            storage.set_trial_user_attr(trial_id, HEARTBEAT_ATTR, now)
        except (ValueError, RuntimeError):  # finished meanwhile
            pass


class Heartbeat:
    """A daemon thread that refreshes the heartbeat of the trials this driver runs."""

    def __init__(self, study: optuna.Study, live_ids: Callable[[], list[int]], every: float = HEARTBEAT_S) -> None:
        self.study, self.live_ids, self.every = study, live_ids, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="drltune-heartbeat", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                mark_alive(self.study, self.live_ids())
            except Exception:  # a database hiccup must not kill the driver; the next beat retries
                pass

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


class SharedBudget:
    """The study-wide `--trials` budget as seen by one driver."""

    def __init__(self, study: optuna.Study, target: int) -> None:
        self.study, self.target, self.driver = study, target, driver_id()
        self._next_check = 0.0

    def _places(self) -> list[FrozenTrial]:
        """Trials holding a place: finished ones that count, and live running ones."""
        now = time.time()
        trials = self.study.get_trials(deepcopy=False, states=(
            TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING))
        return [t for t in trials if (t.state == TrialState.RUNNING and not is_stale(t, now))
                or (t.state != TrialState.RUNNING and not is_interrupted(t))]

    def state(self) -> str:
        """"done" (the study has its trials), "wait" (places held by running trials), or "open"."""
        if time.monotonic() < self._next_check:
            return "wait"
        if counted(self.study) >= self.target:
            return "done"
        if len(self._places()) >= self.target:
            retire_stale(self.study)
            self._next_check = time.monotonic() + RECHECK_S
            return "wait"
        return "open"

    def claim(self, trial: optuna.Trial) -> bool:
        """Mark a freshly asked trial as ours; False (and the trial closed) when it is past the budget."""
        mark_alive(self.study, [trial._trial_id], self.driver)
        ahead = sum(1 for t in self._places() if t.number < trial.number)
        if ahead < self.target:
            return True
        self.study._storage.set_trial_user_attr(trial._trial_id, "interrupted", True)
        self.study._storage.set_trial_user_attr(
            trial._trial_id, "error", f"not run: the study reached --trials {self.target} (another driver was first)")
        self.study.tell(trial, state=TrialState.FAIL)
        self._next_check = time.monotonic() + RECHECK_S
        return False
