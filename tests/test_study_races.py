"""Two drivers racing for one trial's state: exactly one wins, on SQLite and PostgreSQL (issue #23).

Each driver is its own storage object (its own connections), as two processes would be; the
interleaving is forced: both read the trial's row before either writes."""
from __future__ import annotations

import threading
import uuid

import optuna
import pytest
import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages._rdb import models
from optuna.trial import TrialState

from drltune.search import storage as storage_module
from drltune.search.storage import open_storage
from drltune.search.study import retire

optuna.logging.set_verbosity(optuna.logging.WARNING)
REASON = "interrupted: driver died"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    return f"sqlite:///{tmp_path}/race.db" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def _two_drivers(url: str) -> tuple[optuna.Study, optuna.Study, optuna.trial.Trial]:
    """One study seen by two drivers, with one RUNNING trial."""
    name = f"race-{uuid.uuid4().hex[:8]}"
    a = optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=True), direction="maximize")
    b = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=True))
    trial = a.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0)})
    return a, b, trial


@pytest.fixture
def read_together(monkeypatch):
    """Each racing thread's first state change waits, after reading the trial's row, until the other has read
    it too. (On PostgreSQL the read is SELECT ... FOR UPDATE, which holds the row: there both meet
    just before it and race for real.)"""
    original = models.TrialModel.find_or_raise_by_id.__func__
    barrier, seen = threading.Barrier(2, timeout=20), set()

    def find(cls, trial_id, session, for_update=False):
        first = for_update and threading.current_thread().name.startswith("race-") and threading.get_ident() not in seen
        if for_update:
            seen.add(threading.get_ident())
        locking = session.get_bind().dialect.name != "sqlite"
        if first and locking:
            barrier.wait()
        trial = original(cls, trial_id, session, for_update)
        if first and not locking:
            barrier.wait()
        return trial

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", classmethod(find))


def _race(*calls):
    """Run the calls in two threads at once; each one's result or exception."""
    out: list = [None, None]

    def run(i):
        try:
            out[i] = calls[i]()
        except Exception as exc:  # the loser's exception is part of the outcome
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,), name=f"race-{i}") for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _waiting(study):
    return study.get_trials(deepcopy=False, states=(TrialState.WAITING,))


def test_two_drivers_retiring_one_trial_one_wins_and_one_retry_is_queued(url, read_together):
    a, b, trial = _two_drivers(url)
    won = _race(lambda: retire(a, trial._trial_id, REASON + " (a)", 2),
                lambda: retire(b, trial._trial_id, REASON + " (b)", 2))
    assert sorted(won) == [False, True], won  # never an exception: losing is a normal outcome
    closed = a.trials[trial.number]
    assert closed.state == TrialState.FAIL and closed.user_attrs["interrupted"] is True
    assert closed.user_attrs["error"] == REASON + (" (a)" if won[0] else " (b)")  # the winner's labels only
    (retry,) = _waiting(a)
    assert retry.user_attrs["retry_of"] == trial.number and "drltune:state_change" not in retry.system_attrs


def test_an_owner_telling_complete_while_another_driver_retires_one_wins(url, read_together):
    a, b, trial = _two_drivers(url)
    told, retired = _race(lambda: a.tell(trial, 0.75), lambda: retire(b, trial._trial_id, REASON, 2))
    final = a.trials[trial.number]
    if retired is True:  # the retirer won: the owner's COMPLETE was refused, the retry is queued
        assert isinstance(told, (UpdateFinishedTrialError, ValueError)), told
        assert final.state == TrialState.FAIL and final.value is None and len(_waiting(a)) == 1
    else:  # the owner won: nothing retired, no retry, none of the retirer's labels
        assert retired is False and not isinstance(told, Exception), told
        assert final.state == TrialState.COMPLETE and final.value == 0.75
        assert "error" not in final.user_attrs and not _waiting(a)


def test_two_drivers_popping_one_waiting_trial_one_runs_it(url, read_together):
    a, b, trial = _two_drivers(url)
    a.tell(trial, state=TrialState.FAIL)
    a.enqueue_trial({"lr": 0.5})
    (waiting,) = _waiting(a)
    popped = _race(lambda: a._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING),
                   lambda: b._storage.set_trial_state_values(waiting._trial_id, TrialState.RUNNING))
    assert sorted(popped) == [False, True]


def test_a_retried_state_change_knows_its_own_commit_from_another_drivers(tmp_path, monkeypatch):
    """After a dropped connection the retry finds the trial FAIL: True only when that FAIL is its own."""
    monkeypatch.setenv("DRLTUNE_STORAGE_PATIENCE_S", "30")
    a, b, trial = _two_drivers(f"sqlite:///{tmp_path}/race.db")
    original, drops = models.TrialModel.find_or_raise_by_id.__func__, []

    def find(cls, trial_id, session, for_update=False):
        if for_update and not drops:  # driver a's first try: driver b retires the trial, then a's connection drops
            drops.append(1)
            retire(b, trial_id, REASON, 2)
            raise sqlalchemy.exc.OperationalError("UPDATE trials", {}, Exception("server closed the connection"))
        return original(cls, trial_id, session, for_update)

    monkeypatch.setattr(models.TrialModel, "find_or_raise_by_id", classmethod(find))
    with pytest.raises(UpdateFinishedTrialError):  # it was b's FAIL, not a's
        a._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    assert retire(a, trial._trial_id, REASON, 2) is False and len(_waiting(a)) == 1
    monkeypatch.undo()

    # a's own commit that landed before its connection dropped: the retry says it won
    monkeypatch.setenv("DRLTUNE_STORAGE_PATIENCE_S", "30")
    second = a.ask()  # b's queued retry
    scoped, dropped = storage_module.rdb_session, []

    def dropping_after_commit(*args, **kwargs):
        context = scoped(*args, **kwargs)

        class Dropping:
            def __enter__(self):
                return context.__enter__()

            def __exit__(self, *exc):
                result = context.__exit__(*exc)
                if not dropped and exc[0] is None:
                    dropped.append(1)
                    raise optuna.exceptions.StorageInternalError("commit") from sqlalchemy.exc.OperationalError(
                        "COMMIT", {}, Exception("server closed the connection"))
                return result
        return Dropping()

    monkeypatch.setattr(storage_module, "rdb_session", dropping_after_commit)
    assert a._storage.set_trial_state_values(second._trial_id, TrialState.FAIL) is True and dropped
    assert a.trials[second.number].state == TrialState.FAIL


def test_a_driver_resuming_while_another_retires_queues_one_retry(url, monkeypatch):
    """Retiring is the FAIL, then the queued retry; a driver resuming in between (requeue_lost)
    found the trial's retry missing and queued one too: two retries of one lineage ran at once."""
    from drltune.search import study as study_module

    a, b, trial = _two_drivers(url)
    original, resumed = study_module._Requeue.__call__, []

    def queue(self, study, frozen):
        if not resumed:  # driver a's FAIL has landed, its retry not yet: driver b resumes now
            resumed.append(None)
            resumed[0] = study_module.requeue_lost(b)
        return original(self, study, frozen)

    monkeypatch.setattr(study_module._Requeue, "__call__", queue)
    assert retire(a, trial._trial_id, REASON, 2) is True and resumed == [1]
    (retry,) = _waiting(a)
    assert retry.user_attrs["retry_of"] == trial.number
    assert study_module.requeue_lost(a) == 0 and study_module.requeue_lost(b) == 0 and len(_waiting(a)) == 1
