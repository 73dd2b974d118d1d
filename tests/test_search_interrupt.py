"""Issue 3, end to end: Ctrl-C and --timeout end `drltune search` cleanly, and the same command resumes.

One study, three real `drltune search` processes (each in its own session, so its pid is the
foreground process group a terminal's Ctrl-C would reach):
  1. Ctrl-C (SIGINT to the whole group) while a trial runs: exit 130 within seconds, one clean
     message, no trial left RUNNING, no Ray process left behind;
  2. the command again with --timeout: it resumes, stops at the deadline with exit 0 (a timeout is
     a normal end: the summary is printed), no trial left RUNNING;
  3. the command again: exactly --trials finished trials, every trial finished before left as it
     was, every interrupted trial's parameters run again to the end.
"""
from __future__ import annotations

import os
import re
import signal
import time

import pytest
from optuna.trial import TrialState
from search_helpers import Search, load_study, tagged, wait_for

pytestmark = pytest.mark.slow

SPACE = """
fixed:
  encoder_width: 4
  batch_size: 16
  threads: 1
  dataset_params: {n_train: 60, n_val: 24, n_test: 24, audio_freq: 16, audio_time: 16, image_size: 16}
space:
  lr: {low: 1.0e-3, high: 1.0e-1, log: true}
methods:
  baseline: {}
"""
NAME = "interrupt"
TRIALS = 4
TIMEOUT_S = 5  # counted from Ray start-up: shorter than any trial here, so it always cuts the run
STOP_S = 180  # how long a stop may take (Ray shuts down slowly on a busy machine)


def _trials(url: str) -> list:
    try:
        return load_study(url, NAME).get_trials(deepcopy=False)
    except KeyError:  # the study is not created yet
        return []


def _done(trials: list) -> dict[int, tuple]:
    """Finished trials that count (COMPLETE/PRUNED), with everything that must never change."""
    return {t.number: (t.state, t.value, dict(t.intermediate_values), t.params) for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}


def _cut(trials: list) -> list:
    return [t for t in trials if t.state == TrialState.FAIL and t.user_attrs.get("interrupted")]


def _lines(search: Search) -> list[str]:
    out = search.output()
    assert "Traceback" not in out, out[-3000:]
    return [line for line in out.splitlines() if line.strip()]


def _no_orphans(search: Search, within: float = 20) -> None:
    """A clean stop takes its Ray processes with it (no kill needed)."""
    deadline = time.monotonic() + within
    while tagged(search.tag) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not tagged(search.tag), "Ray processes outlived the stopped search"


def test_ctrl_c_and_timeout_stop_cleanly_and_the_same_command_resumes(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    space = tmp_path / "space.yaml"
    space.write_text(SPACE)
    args = ["--space", str(space), "--trials", str(TRIALS), "--max-epochs", "8", "--concurrent", "2",
            "--study", NAME, "--storage", url, "--pruner", "none"]
    searches: list[Search] = []
    try:
        # 1. Ctrl-C once a trial has finished and another one is running.
        first = Search(tmp_path, args)
        searches.append(first)
        wait_for(lambda: (states := [t.state for t in _trials(url)]) and TrialState.RUNNING in states
                 and TrialState.COMPLETE in states, 300, "a finished and a running trial", first, poll=0.2)
        os.killpg(first.proc.pid, signal.SIGINT)  # a terminal's Ctrl-C: the whole foreground group
        sent = time.monotonic()
        # Generous on a loaded machine (Ray's shutdown); what is asserted is the exit status and lines.
        assert first.wait(STOP_S) == 130, first.output()[-3000:]
        assert time.monotonic() - sent < STOP_S
        lines = _lines(first)
        assert lines[-1] == "error: interrupted", lines[-5:]
        assert re.fullmatch(r"stopped by Ctrl-C: [1-9]\d* running trials closed and queued for the next run",
                            lines[-2]), lines[-5:]
        _no_orphans(first)
        after_ctrl_c = _trials(url)
        assert not [t for t in after_ctrl_c if t.state == TrialState.RUNNING]
        cut = _cut(after_ctrl_c)
        assert cut and all(t.user_attrs["error"] == "interrupted: stopped by Ctrl-C" for t in cut)
        kept = _done(after_ctrl_c)
        assert kept

        # 2. The same command with a short --timeout: it resumes, then stops at the deadline.
        second = Search(tmp_path, [*args, "--timeout", str(TIMEOUT_S)])
        searches.append(second)
        started = time.monotonic()
        assert second.wait(TIMEOUT_S + STOP_S) == 0, second.output()[-3000:]
        assert time.monotonic() - started < TIMEOUT_S + STOP_S
        lines = _lines(second)
        assert any(line.startswith(f"resuming: {len(kept)} finished trials kept") for line in lines), lines
        assert any(re.fullmatch(r"stopped by --timeout: \d+ running trials closed and queued for the next run",
                                line) for line in lines), lines[-8:]
        _no_orphans(second)
        after_timeout = _trials(url)
        assert not [t for t in after_timeout if t.state == TrialState.RUNNING]
        assert {n: v for n, v in _done(after_timeout).items() if n in kept} == kept
        cut += [t for t in _cut(after_timeout) if t.number not in {c.number for c in cut}]
        kept = _done(after_timeout)

        # 3. The same command again finishes the study.
        third = Search(tmp_path, args)
        searches.append(third)
        assert third.wait(300) == 0, third.output()[-3000:]
        assert any(line.startswith(f"resuming: {len(kept)} finished trials kept") for line in _lines(third))
        final = _trials(url)
        assert all(t.state.is_finished() for t in final), [(t.number, t.state.name) for t in final]
        assert {n: v for n, v in _done(final).items() if n in kept} == kept, "a finished trial changed"
        counted = [t for t in final if not t.user_attrs.get("interrupted")]
        assert len(counted) == TRIALS and all(t.state == TrialState.COMPLETE for t in counted)
        for t in cut:  # each cut trial's parameters ran again; a retry cut by the timeout was retried in turn
            (retry,) = [r for r in final if r.user_attrs.get("retry_of") == t.number]
            assert retry.params == t.params
            assert retry.state == TrialState.COMPLETE or retry.user_attrs.get("interrupted"), retry
        assert any(t.user_attrs.get("retry_of") is not None for t in counted)
    finally:
        for search in searches:  # by PID: the drivers and any Ray process they left
            search.kill()
