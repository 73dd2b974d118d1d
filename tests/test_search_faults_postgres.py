"""End to end: a search survives its PostgreSQL server going down, for a while or for good. The
server is one the test may stop (`stoppable_postgres`), in a file of its own so that pytest-xdist
can run these beside the other fault tests."""
from __future__ import annotations

import uuid

import pytest
from optuna.trial import TrialState
from search_helpers import Search, counted, finished, load_study, wait_for
from test_search_faults import TWO_METHODS, _space

pytestmark = pytest.mark.slow


def _pg(ctl: str, action: str) -> None:
    import subprocess

    subprocess.run(f"{ctl} {action}", shell=True, check=True, capture_output=True, timeout=120)


def test_postgresql_restart_mid_search_loses_nothing(tmp_path, stoppable_postgres):
    """The server goes down for 10 s while trials train and report: every storage call waits it out,
    and the search ends with exactly --trials finished trials and nothing left RUNNING."""
    import time

    postgres_url, ctl = stoppable_postgres
    name = f"restart-{uuid.uuid4().hex[:8]}"
    args = ["--space", str(_space(tmp_path, TWO_METHODS)), "--trials", "5", "--max-epochs", "3", "--study", name,
            "--storage", postgres_url, "--pruner", "none"]
    search = Search(tmp_path, args)
    wait_for(lambda: len(finished(postgres_url, name)) >= 1, 400, "a finished trial", search)
    _pg(ctl, "stop")
    try:
        time.sleep(10)
    finally:
        _pg(ctl, "start")
    assert search.wait() == 0, search.output()[-3000:]
    study = load_study(postgres_url, name)
    assert len(counted(study)) == 5 and not [t for t in study.get_trials(deepcopy=False) if not t.state.is_finished()]
    assert not [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.FAIL]


def test_a_storage_that_stays_down_ends_with_one_line_and_the_same_command_resumes(tmp_path, stoppable_postgres):
    import os

    postgres_url, ctl = stoppable_postgres
    name = f"down-{uuid.uuid4().hex[:8]}"
    args = ["--space", str(_space(tmp_path, TWO_METHODS)), "--trials", "4", "--max-epochs", "3", "--study", name,
            "--storage", postgres_url, "--pruner", "none"]
    os.environ["DRLTUNE_STORAGE_PATIENCE_S"] = "8"
    try:
        search = Search(tmp_path, args)
    finally:
        del os.environ["DRLTUNE_STORAGE_PATIENCE_S"]
    wait_for(lambda: len(finished(postgres_url, name)) >= 1, 400, "a finished trial", search)
    _pg(ctl, "stop")
    try:
        code = search.wait()
    finally:
        _pg(ctl, "start")
    errors = [line for line in search.output().splitlines() if line.startswith("error:")]
    assert code == 1 and len(errors) == 1 and "unreachable for 8 s" in errors[0], search.output()[-3000:]
    again = Search(tmp_path, args)
    assert again.wait() == 0, again.output()[-3000:]
    study = load_study(postgres_url, name)
    assert len(counted(study)) == 4 and not [t for t in study.get_trials(deepcopy=False) if not t.state.is_finished()]
