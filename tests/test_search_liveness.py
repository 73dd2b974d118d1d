"""Several drivers on one study: liveness on the database's clock, unique driver ids, the same-host
fast path, and samplers that do not propose the same configurations in two drivers."""
from __future__ import annotations

import subprocess
import sys

import optuna
import sqlalchemy
from optuna.trial import TrialState

from drltune.search import liveness
from drltune.search.liveness import SharedBudget, driver_id, retire_stale, stale_trials
from drltune.search.samplers import make_sampler
from drltune.search.seeding import TrialSeededSampler
from drltune.search.storage import open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)
LR = {"lr": optuna.distributions.FloatDistribution(1e-4, 1.0, log=True)}


def _study(tmp_path, name="s"):
    url = f"sqlite:///{tmp_path}/s.db"
    return optuna.create_study(study_name=name, storage=open_storage(url, heartbeat=True), load_if_exists=True,
                               direction="maximize"), url


def _age_heartbeat(url: str, trial_id: int, seconds: int) -> None:
    """Move a trial's heartbeat back in time, on the database's clock."""
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = datetime(heartbeat, :age) "
                                     "WHERE trial_id = :id"), {"age": f"-{seconds} seconds", "id": trial_id})


def test_driver_ids_are_unique_between_processes_with_the_same_host_and_pid():
    script = ("import sys, types, drltune; package = types.ModuleType('drltune.search'); "  # not the whole package
              "package.__path__ = [drltune.__path__[0] + '/search']; sys.modules['drltune.search'] = package; "
              "from drltune.search.liveness import driver_id; print(driver_id())")
    other = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.strip()
    assert other != driver_id() and other.count(":") == 2
    host, pid, token = driver_id().split(":")
    assert len(token) == 8


def test_stale_by_the_database_clock_never_this_drivers_own(tmp_path):
    study, url = _study(tmp_path)
    mine = SharedBudget(study, 10, max_retries=2)
    other = SharedBudget(study, 10, max_retries=2)
    other.driver = "elsewhere:1234:abcdef01"  # another machine: no PID check possible
    other.namespace = "another-kernel"
    a, b = study.ask(LR), study.ask(LR)
    assert mine.claim(a) and other.claim(b)
    assert stale_trials(study) == []
    _age_heartbeat(url, b._trial_id, liveness.GRACE_S + 30)
    _age_heartbeat(url, a._trial_id, liveness.GRACE_S + 30)
    assert {t.number for t in stale_trials(study)} == {a.number, b.number}
    assert [t.number for t in stale_trials(study, me=mine.driver)] == [b.number]  # its own: never
    assert retire_stale(study, max_retries=2, me=mine.driver) == 1
    assert study.trials[b.number].state == TrialState.FAIL and study.trials[b.number].user_attrs["interrupted"]
    assert study.trials[a.number].state == TrialState.RUNNING


def test_a_dead_driver_on_this_machine_is_known_at_once(tmp_path):
    study, _ = _study(tmp_path)
    trial = study.ask(LR)
    budget = SharedBudget(study, 10, max_retries=2)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    budget.claim(trial)
    study._storage.set_trial_user_attr(trial._trial_id, liveness.DRIVER_ATTR, f"host:{dead.pid}:deadbeef")
    assert [t.number for t in stale_trials(study)] == [trial.number]  # heartbeat fresh, process gone
    study._storage.set_trial_user_attr(trial._trial_id, liveness.DRIVER_NS_ATTR, "another-container")
    assert stale_trials(study) == []  # the same PID in another namespace says nothing


def test_two_drivers_with_the_same_seed_propose_different_configurations(tmp_path):
    study, _ = _study(tmp_path)

    def driver():
        return TrialSeededSampler(lambda seed: make_sampler("tpe", seed, 40)[0], seed=0)

    first, second = driver(), driver()
    study.sampler = first
    a = study.ask(LR)
    study.sampler = second
    b = study.ask(LR)
    assert a.params["lr"] != b.params["lr"]

    again, _ = _study(tmp_path, "again")  # one driver alone: the same proposals for the same trial numbers
    again.sampler = driver()
    assert again.ask(LR).params["lr"] == a.params["lr"]


def test_a_trial_is_born_claimed_by_the_driver_that_asks_for_it(tmp_path):
    study, _ = _study(tmp_path)
    budget = SharedBudget(study, 10, max_retries=2)
    trial = study.ask(LR)  # no claim yet: a driver cut off right here must not leave an ownerless trial
    attrs = study._storage.get_trial(trial._trial_id).user_attrs
    assert attrs[liveness.DRIVER_ATTR] == budget.driver and attrs[liveness.DRIVER_NS_ATTR] == budget.namespace


def test_a_trial_nobody_claimed_is_stale_once_watched_long_enough(tmp_path, monkeypatch):
    study, _ = _study(tmp_path)
    claimed = study.ask(LR)
    SharedBudget(study, 10, max_retries=2).claim(claimed)
    other = SharedBudget(study, 10, max_retries=2)
    other.driver = "elsewhere:1234:abcdef01"  # asked on another machine, cut off before its first heartbeat
    unclaimed = study.ask(LR)
    study._storage.set_trial_user_attr(unclaimed._trial_id, liveness.DRIVER_ATTR, other.driver)
    study._storage.set_trial_user_attr(unclaimed._trial_id, liveness.DRIVER_NS_ATTR, "another-kernel")
    phantom = study.ask(LR)  # born with this driver's id, never claimed (a retried insert that had landed)
    clock = [1000.0]  # this process's clock, moved on by hand instead of waited out
    monkeypatch.setattr(liveness.time, "monotonic", lambda: clock[0])
    assert stale_trials(study) == []  # first seen now: its driver may be claiming it this very moment
    clock[0] += liveness.ORPHAN_S
    mine = phantom.user_attrs[liveness.DRIVER_ATTR]
    assert [t.number for t in stale_trials(study, me=mine)] == [unclaimed.number, phantom.number]
    assert claimed.number not in [t.number for t in stale_trials(study)]  # never one with a heartbeat


def test_an_unclaimed_trial_of_one_database_never_ages_a_trial_of_another(tmp_path, monkeypatch):
    """Trial ids restart with every database: a process that watched trial id 1 of one study long ago
    (the test suite, a notebook) must not call trial id 1 of a new database stale at first sight."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    old, _ = _study(tmp_path / "a")
    clock = [1000.0]
    monkeypatch.setattr(liveness.time, "monotonic", lambda: clock[0])
    first = old.ask(LR)
    assert stale_trials(old) == []  # watched from now on
    clock[0] += liveness.ORPHAN_S + 1
    new, _ = _study(tmp_path / "b")
    second = new.ask(LR)
    assert second._trial_id == first._trial_id
    assert stale_trials(new) == []  # first seen now, in its own database
    assert [t.number for t in stale_trials(old)] == [first.number]  # the old one has been watched long enough


def test_a_driver_whose_last_places_are_held_elsewhere_waits_and_says_so(tmp_path):
    from drltune.search.bridge import OptunaBridge

    study, _ = _study(tmp_path)
    other = SharedBudget(study, 2, max_retries=2)
    other.driver, other.namespace = "elsewhere:1234:abcdef01", "another-kernel"  # alive, on another machine
    held = [study.ask(LR) for _ in range(2)]
    assert all(other.claim(t) for t in held)
    lines: list[str] = []
    bridge = OptunaBridge(study, None, None, SharedBudget(study, 2, max_retries=2), note=lines.append)
    assert bridge.suggest("t1") is None and bridge.suggest("t2") is None  # ask again later, not FINISHED
    assert len(lines) == 1 and f"#{held[0].number}, #{held[1].number}" in lines[0], lines


def test_a_trial_asked_past_the_budget_is_not_run_and_never_queued_again(tmp_path):
    """Closed at once as `not_run`, not `interrupted`: a resume must not queue it (in a finished
    study the queued trial would wait forever; drivers resuming together would queue duplicates),
    nor may it count as failed. Studies that marked it interrupted are read by its error."""
    from drltune.search.progress import Progress
    from drltune.search.study import requeue_lost

    study, _ = _study(tmp_path)
    budget = SharedBudget(study, 1, max_retries=2)
    first, extra = study.ask(LR), study.ask(LR)
    assert budget.claim(first) and not budget.claim(extra)
    closed = study.trials[extra.number]
    assert closed.state == TrialState.FAIL and closed.user_attrs["not_run"] and "interrupted" not in closed.user_attrs
    assert closed.user_attrs["error"].startswith("not run: the study reached --trials 1")

    old = study.ask(LR)  # as stored before `not_run` existed
    old.set_user_attr("interrupted", True)
    old.set_user_attr("error", "not run: the study reached --trials 1 (another driver was first)")
    study.tell(old, state=TrialState.FAIL)
    assert requeue_lost(study) == 0 and requeue_lost(study) == 0
    assert study.get_trials(states=(TrialState.WAITING,)) == []
    study.tell(first, 0.5)
    assert "failed 0" in Progress(study, 1, print, running=lambda: 0).status()

    cut = study.ask(LR)  # a really interrupted trial whose retry was never queued still is
    cut.set_user_attr("interrupted", True)
    study.tell(cut, state=TrialState.FAIL)
    assert requeue_lost(study) == 1
    assert [t.user_attrs["retry_of"] for t in study.get_trials(states=(TrialState.WAITING,))] == [cut.number]


def test_a_stale_trial_gives_up_its_place_only_once_retired(tmp_path):
    """--trials 1: another driver's trial goes stale (its driver stalled on the storage), this
    driver takes the place with the trial's retry; when the owner comes back its tell finds the
    trial finished and drops it, so the study ends with one trial, not two."""
    import yaml

    from drltune.config import TrialConfig
    from drltune.search.bridge import OptunaBridge
    from drltune.search.space_file import parse_space
    from drltune.search.study import counted
    from drltune.search.trainable import epoch_result

    study, url = _study(tmp_path)
    space = parse_space(yaml.safe_load("space: {lr: {low: 1.0e-3, high: 1.0e-1, log: true}}\nmethods: {baseline: {}}"),
                        max_epochs=2)
    base = TrialConfig(epochs=2, encoder_width=4)
    owner_study = optuna.load_study(study_name="s", storage=open_storage(url, heartbeat=True))
    owner_budget = SharedBudget(owner_study, 1, max_retries=2)
    owner_budget.driver, owner_budget.namespace = "elsewhere:1234:abcdef01", "another-kernel"
    outcomes = []
    owner = OptunaBridge(owner_study, space, base, owner_budget, on_outcome=outcomes.append)
    mine = OptunaBridge(study, space, base, SharedBudget(study, 1, max_retries=2))

    def result(epoch: int, acc: float, final: bool = False) -> dict:
        extra = {"best_val_acc": acc, "best_epoch": epoch, "test_acc": 0.5, "test_f1": 0.4, "test_acc_audio": 0.3,
                 "test_acc_visual": 0.2} if final else {}
        return {**epoch_result({"epoch": epoch, "val_acc": acc}), **extra}

    stalled = owner.suggest("a")["optuna_trial"]
    owner.on_epoch("a", result(0, 0.5))
    owner.on_epoch("a", result(1, 0.6, final=True))
    assert mine.suggest("b") is None  # its place is held
    _age_heartbeat(url, study.trials[stalled]._trial_id, liveness.GRACE_S + 30)  # the owner stalls
    mine.shared._next_check = 0.0
    retry = mine.suggest("b")
    assert retry is not None and study.trials[stalled].state == TrialState.FAIL
    assert study.trials[retry["optuna_trial"]].user_attrs["retry_of"] == stalled

    owner.on_trial_complete("a", result(1, 0.6, final=True))  # back from the stall: its tell is refused
    assert [(o.number, o.state) for o in outcomes] == [(stalled, "interrupted")]  # dropped, not complete
    mine.on_trial_complete("b", result(1, 0.7, final=True))
    assert counted(study) == 1 and study.trials[stalled].user_attrs["interrupted"]


def test_a_fresh_heartbeat_is_fresh_to_drivers_in_other_time_zones(postgres_url):
    """PostgreSQL renders now() in each session's TimeZone and Optuna's heartbeat column has none:
    a driver 26 hours east of another saw its heartbeats as a day old (or from tomorrow)."""
    import uuid

    def driver(zone: str, create: bool) -> optuna.Study:
        url = postgres_url + ("&" if "?" in postgres_url else "?") + f"options=-c%20TimeZone%3D{zone}"
        storage, name = open_storage(url, heartbeat=True), f"tz-{run}"
        study = (optuna.create_study(study_name=name, storage=storage, direction="maximize") if create
                 else optuna.load_study(study_name=name, storage=storage))
        with study._storage._backend.engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SHOW TimeZone")).scalar() == zone.replace("%2B", "+")
        return study

    run = uuid.uuid4().hex[:8]
    east, west = driver("Pacific/Kiritimati", True), driver("Etc/GMT%2B12", False)  # UTC+14, UTC-12
    age = sqlalchemy.text("UPDATE trial_heartbeats SET heartbeat = heartbeat - :age * interval '1 second' "
                          "WHERE trial_id = :id")
    for owner, other in ((east, west), (west, east)):
        trial = owner.ask(LR)
        owner._storage.record_heartbeat(trial._trial_id)  # the insert
        owner._storage.record_heartbeat(trial._trial_id)  # an update
        assert trial._trial_id not in other._storage._get_stale_trial_ids(other._study_id)
        assert trial._trial_id not in owner._storage._get_stale_trial_ids(owner._study_id)
        engine = sqlalchemy.create_engine(postgres_url)
        with engine.begin() as conn:  # the owner stalls: its trial is stale to both
            conn.execute(age, {"age": liveness.GRACE_S + 30, "id": trial._trial_id})
        engine.dispose()
        assert trial._trial_id in other._storage._get_stale_trial_ids(other._study_id)
        assert trial._trial_id in owner._storage._get_stale_trial_ids(owner._study_id)
        owner.tell(trial, 0.5)


def test_a_driver_gives_up_on_the_storage_before_others_call_it_dead(monkeypatch):
    """A storage call waits out the patience; the heartbeat may be due just before it starts: both
    must end before another driver calls this one's trials stale (and retries them)."""
    from drltune.search import storage

    monkeypatch.delenv(storage.PATIENCE_ENV, raising=False)
    assert storage.patience_s() + storage.HEARTBEAT_S <= storage.HALT_S < storage.GRACE_S
    monkeypatch.setenv(storage.PATIENCE_ENV, "1000")  # more asked for: capped
    assert storage.patience_s() + storage.HEARTBEAT_S <= storage.HALT_S < storage.GRACE_S
    monkeypatch.setenv(storage.PATIENCE_ENV, "8")  # less is fine (the fault tests)
    assert storage.patience_s() == 8


def test_a_driver_whose_heartbeats_fail_halts_its_trials(tmp_path):
    """Failing beats for longer than the limit, or one beat that outlasted the storage's patience,
    stop this driver's trials (the bridge halts) before other drivers retry them."""
    import time

    from drltune.search.bridge import OptunaBridge, StopSearch
    from drltune.search.storage import StorageUnavailable

    cases = ((RuntimeError("database is locked"), 0.3, "heartbeats for"),
             (StorageUnavailable("storage x unreachable for 70 s"), 60, "unreachable for 70 s"))  # named, not the age
    for error, limit, cause in cases:
        study, _ = _study(tmp_path, f"s-{limit}")
        bridge = OptunaBridge(study, None, None, SharedBudget(study, 2, max_retries=2))
        trial = study.ask(LR)

        def down(trial_id: int, error: Exception = error) -> None:
            raise error

        study._storage.record_heartbeat = down
        beat = liveness.Heartbeat(study, lambda: [trial._trial_id], every=0.05, limit=limit, on_lost=bridge.halt)
        with beat:
            deadline = time.monotonic() + 10
            while bridge.stop_reason() is None and time.monotonic() < deadline:
                time.sleep(0.05)
        assert StopSearch(bridge).stop_all() and cause in bridge.stop_reason(), bridge.stop_reason()
        assert beat.failing_for() < 10
