"""Helpers for tests that run `drltune search` as a real process: each run in its own session
(process group) with a marker in its environment, so that every process it started, Ray's
orphans included, can be found and killed by PID; and read-only views of its Optuna study."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest

DRLTUNE = str(Path(sys.executable).with_name("drltune"))
MARKER = "DRLTUNE_TEST_SEARCH_RUN"


class Search:
    """One `drltune search` process (own session, tagged environment)."""

    def __init__(self, cwd: Path, args: list[str], faults: str = "",
                 command: tuple[str, ...] = ("search", "--race", "0")) -> None:
        self.tag = uuid.uuid4().hex
        env = {**os.environ, MARKER: self.tag, "DRLTUNE_FAULTS": faults, "PYTHONUNBUFFERED": "1"}
        self.log = cwd / f"search-{self.tag[:8]}.log"
        with open(self.log, "w") as out:
            self.proc = subprocess.Popen([DRLTUNE, *command, *args], cwd=cwd, env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float = 400) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"search did not finish in {timeout}s:\n{self.output()[-3000:]}")

    def kill(self) -> None:
        """SIGKILL the driver, then every process that carries this run's marker (Ray's orphans)."""
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(30)
        for _ in range(3):  # again after a pause while any are found (a dying raylet may have forked)
            pids = tagged(self.tag)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        assert not tagged(self.tag), "orphaned Ray processes survived"


def tagged(tag: str) -> list[int]:
    needle = f"{MARKER}={tag}".encode()
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def wait_for(condition, timeout: float, what: str, search: Search, poll: float = 0.5) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if search.proc.poll() is not None:
            pytest.fail(f"search exited before {what}:\n{search.output()[-3000:]}")
        time.sleep(poll)
    search.kill()
    pytest.fail(f"timed out waiting for {what}:\n{search.output()[-3000:]}")


def load_study(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=url)


def finished(url: str, name: str) -> dict[int, tuple[str, float | None]]:
    try:
        trials = load_study(url, name).get_trials(deepcopy=False)
    except KeyError:
        return {}
    return {t.number: (t.state.name, t.value) for t in trials if t.state.is_finished()}


def counted(study: optuna.Study) -> list:
    """The trials that use up --trials: COMPLETE and PRUNED (failures do not)."""
    return study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED))
