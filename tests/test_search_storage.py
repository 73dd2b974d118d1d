"""Storage URLs (default under the current directory), study resume checks, the dashboard command."""
from __future__ import annotations

import json
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from click.testing import CliRunner

from drltune.cli import cli
from drltune.errors import DrltuneError
from drltune.search.pruning import make_pruner
from drltune.search.samplers import make_sampler
from drltune.search.storage import display_url, open_storage
from drltune.search.storage_url import resolve_storage_url
from drltune.search.study import counted, create_or_resume, requeue_lost, retire

optuna.logging.set_verbosity(optuna.logging.WARNING)
ATTRS = {"dataset": "synthetic", "max_epochs": 4, "space": "methods: {baseline: {}}"}


def test_default_storage_lives_in_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_storage_url(None) == f"sqlite:///{tmp_path.resolve()}/studies/drltune.db"
    open_storage(resolve_storage_url(None))
    assert (tmp_path / "studies" / "drltune.db").exists()


@pytest.mark.parametrize("url, message", [("not a url", "not a database URL"),
                                          ("sqlite://", "in-memory SQLite"),
                                          ("nosuchdb://x/y", "cannot open storage")])
def test_bad_storage_urls_are_one_line_errors(url, message):
    with pytest.raises(DrltuneError, match=message):
        open_storage(resolve_storage_url(url))


def test_passwords_are_never_printed():
    assert "secret" not in display_url("postgresql://user:secret@db.example/drltune")


def _open(storage, **attrs):
    pruner, _ = make_pruner("median", 4, 8)
    sampler, _ = make_sampler("tpe", 0, 8)
    return create_or_resume("s", storage, sampler, pruner, {**ATTRS, **attrs})


def test_resume_refuses_a_changed_space_or_budget_and_retired_trials_are_retried(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db")
    study, existed = _open(storage)
    assert not existed and study.user_attrs["max_epochs"] == 4
    done = study.ask({"method": optuna.distributions.CategoricalDistribution(["baseline"])})
    study.tell(done, 0.5)
    stale = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0)})
    with pytest.raises(DrltuneError, match="max_epochs was 4, now 6"):
        _open(storage, max_epochs=6)
    with pytest.raises(DrltuneError, match="the search space file changed"):
        _open(storage, space="methods: {dr: {}}")
    study, existed = _open(storage)
    assert existed
    retire(study, stale._trial_id, "interrupted: the driver was killed", max_retries=2)
    closed = study.trials[stale.number]
    assert closed.state == optuna.trial.TrialState.FAIL and closed.user_attrs["interrupted"]
    assert "interrupted" in closed.user_attrs["error"]
    assert counted(study) == 1  # the interrupted trial does not count toward --trials
    retry = study.ask()  # ... and its parameters come back first
    assert retry.user_attrs["retry_of"] == stale.number
    assert retry.suggest_float("lr", 1e-4, 1.0) == stale.params["lr"]


def test_dashboard_serves_the_study_and_warns_off_loopback(tmp_path, monkeypatch):
    import optuna_dashboard

    url = f"sqlite:///{tmp_path}/s.db"
    _open(open_storage(url))
    app = optuna_dashboard.wsgi(open_storage(url))
    environ = {"PATH_INFO": "/api/studies"}
    setup_testing_defaults(environ)
    status = []
    body = b"".join(app(environ, lambda s, h, exc_info=None: status.append(s)))
    assert status[0].startswith("200") and [s["study_name"] for s in json.loads(body)["study_summaries"]] == ["s"]

    calls = []
    monkeypatch.setattr(optuna_dashboard, "run_server",
                        lambda storage, host, port, **served: calls.append((host, port)))  # + artifact_store
    out = CliRunner().invoke(cli, ["dashboard", "--storage", url])
    assert out.exit_code == 0 and calls[-1] == ("127.0.0.1", 8080) and "warning" not in out.output
    out = CliRunner().invoke(cli, ["dashboard", "--storage", url, "--host", "0.0.0.0", "--port", "9000"])
    assert calls[-1] == ("0.0.0.0", 9000) and "unauthenticated" in out.output
    out = CliRunner().invoke(cli, ["dashboard", "--storage", f"sqlite:///{tmp_path}/none.db"])
    assert out.exit_code != 0 and "none.db does not exist" in str(out.exception)
    assert not (tmp_path / "none.db").exists()  # the dashboard reads: it never makes a storage


def test_retries_are_bounded_along_the_chain(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=True)
    study, _ = _open(storage)
    trial = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0)})
    chain = [trial.number]
    for _ in range(3):  # cut off three times: retried twice, then given up
        assert retire(study, trial._trial_id, "interrupted: driver died", max_retries=2)
        waiting = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
        if not waiting:
            break
        trial = study.ask()
        chain.append(trial.number)
    assert len(chain) == 3
    assert [study.trials[n].user_attrs.get("retry_of") for n in chain] == [None, chain[0], chain[1]]
    from drltune.search.study import lineage
    assert {lineage(study.trials[n]) for n in chain} == {chain[0]}
    last = study.trials[chain[-1]]
    assert not last.user_attrs["interrupted"] and "not retried: cut off 3 times" in last.user_attrs["error"]


def test_a_retry_lost_between_fail_and_queue_is_queued_on_resume(tmp_path, monkeypatch):
    storage = open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=True)
    study, _ = _open(storage)
    first = study.ask({"lr": optuna.distributions.FloatDistribution(1e-4, 1.0)})
    assert retire(study, first._trial_id, "interrupted: driver died", max_retries=2)
    retry = study.ask()
    import drltune.search.study as study_module

    monkeypatch.setattr(study_module._Requeue, "__call__", lambda *args: None)  # killed right after the FAIL
    assert retire(study, retry._trial_id, "interrupted: driver died", max_retries=2)
    monkeypatch.undo()
    assert not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert requeue_lost(study) == 1 and requeue_lost(study) == 0  # the first retry's own retry was queued
    (queued,) = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.WAITING,))
    assert queued.user_attrs["retry_of"] == retry.number and queued.params == retry.params
    from drltune.search.study import lineage
    assert lineage(queued) == first.number  # so it resumes from the chain's checkpoint


CREATE_SCRIPT = """
import sys, time, types
import drltune
package = types.ModuleType("drltune.search")  # the storage modules alone, not the search package's imports
package.__path__ = [drltune.__path__[0] + "/search"]
sys.modules["drltune.search"] = package
from drltune.search.storage import open_storage
from drltune.search.study import create_or_resume
import optuna
print("ready", flush=True)
for line in sys.stdin:  # one line per round, sent once every process is ready: "<file> <instant>"
    url, start = line.split()
    time.sleep(max(0.0, float(start) - time.time()))
    storage = open_storage(url, heartbeat=True)
    create_or_resume("s", storage, optuna.samplers.RandomSampler(), optuna.pruners.NopPruner(),
               {"dataset": "synthetic", "max_epochs": 4, "space": "x"})
    print("ready", flush=True)
"""


def test_drivers_opening_a_new_sqlite_file_at_once_never_race(tmp_path):
    """Processes that open one new SQLite file at the same instant, under a CPU load, all succeed
    (without the file lock, one fails with 'table ... already exists' now and then)."""
    import subprocess
    import sys
    import time

    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        # 5 rounds of 4 processes as before, but each process imports once and opens one new file per
        # round, all at one instant once all are ready: start-up is paid once, not in every round.
        procs = [subprocess.Popen([sys.executable, "-c", CREATE_SCRIPT], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for round_ in range(5):
            ready = [p.stdout.readline() for p in procs]  # the previous round is done (or a process died)
            if ready != ["ready\n"] * 4:
                break
            line = f"sqlite:///{tmp_path}/race{round_}.db {time.time() + 0.3}\n"
            for p in procs:
                p.stdin.write(line)
                p.stdin.flush()
        errors = [p.communicate(timeout=300)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), [e[-500:] for e in errors]
        assert ready == ["ready\n"] * 4 and len(list(tmp_path.glob("race*.db"))) == 5, [e[-500:] for e in errors]
    finally:
        for b in burners:
            b.kill()


def test_a_busy_sqlite_database_is_waited_out(tmp_path):
    """A write lock held past SQLite's own timeout: the storage retries with back-off until it is released."""
    import sqlite3
    import threading

    from drltune.search.storage import ResilientRDBStorage

    url = f"sqlite:///{tmp_path}/busy.db"
    _open(open_storage(url))
    storage = ResilientRDBStorage(url, engine_kwargs={"connect_args": {"timeout": 0.05}})
    study_id = storage.get_study_id_from_name("s")
    holder = sqlite3.connect(tmp_path / "busy.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    threading.Timer(2.0, holder.rollback).start()
    storage.set_study_user_attr(study_id, "written", "through the lock")  # plain RDBStorage raises here
    assert storage.get_study_user_attrs(study_id)["written"] == "through the lock"


def test_a_study_begun_on_an_earlier_default_space_resumes_on_its_own(tmp_path, monkeypatch):
    from drltune.search import runner
    from drltune.search.space_file import load_space

    default = tmp_path / "default.yaml"
    default.write_text("methods: {baseline: {}, dr: {reinit_epoch: 2}}\n")
    monkeypatch.setattr(runner, "DEFAULT_SPACE", default)
    url = f"sqlite:///{tmp_path}/s.db"
    spec = runner.SearchSpec(space_file=default, storage=url, max_epochs=4)
    earlier = load_space(default, 4)
    create_or_resume("synthetic-default", open_storage(url), optuna.samplers.RandomSampler(), optuna.pruners.NopPruner(),
                     {**ATTRS, "space": earlier.text})
    default.write_text("methods: {baseline: {}, dr: {reinit_epoch: 2}, ogm_ge: {}}\n")  # an upgrade added a method
    storage = runner.open_if_resumable(url, default)
    plan = runner.prepare(spec, runner.stored_space(storage, runner.study_name(spec)))
    assert plan.space.text == earlier.text and "began with" in plan.space_line
    assert runner.stored_space(storage, "new") is None  # a new study takes today's default
    given = tmp_path / "mine.yaml"
    given.write_text(default.read_text())
    assert runner.open_if_resumable(url, given) is None  # an explicit --space is checked as before
