"""The search's progress display: a tqdm bar on a terminal (checked through a real pseudo-terminal),
plain lines with the time left elsewhere."""
from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
from types import SimpleNamespace

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial

from drltune.search.display import TimeLeft
from drltune.search.progress import Outcome, Progress
from drltune.search.ticker import EpochTicker

optuna.logging.set_verbosity(optuna.logging.WARNING)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def ray_trial(trial_id: str, number: int, epochs: int = 4) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id, config={"optuna_trial": number, "trial": {"epochs": epochs}})


def test_time_left_is_the_epochs_to_train_at_this_runs_rate():
    clock = Clock()
    left = TimeLeft(total=5, done=1, max_epochs=4, clock=clock)
    running = {"a": (3, 0, 4, 0.5), "b": (4, 2, 4, 0.5)}
    assert left.seconds(running) is None and left.text(running) is None  # no epoch yet: no guess
    for _ in range(4):
        left.epoch()
    clock.now += 20.0  # 4 epochs in 20 s: 5 s an epoch
    # 2 trials not started (5 - 1 done - 2 running) x 4 epochs + 3 + 1 epochs of the running ones = 12 epochs
    assert left.seconds(running) == 60.0 and left.text(running) == "about 01:00 left"


def test_plain_lines_say_the_running_epochs_and_the_time_left():
    clock, lines = Clock(), []
    left = TimeLeft(total=2, done=0, max_epochs=4, clock=clock)
    ticker = EpochTicker(lines.append, interval=0.0, time_left=left)
    clock.now += 10.0
    ticker.on_trial_result(0, [], ray_trial("a", 0), {"epoch": 0, "val_acc": 0.25})
    ticker.on_trial_result(0, [], ray_trial("a", 0), {"epoch": 0, "val_acc": 0.25})  # Ray's repeat: one epoch
    assert left.epochs_seen == 1
    # 1 epoch in 10 s; 1 trial not started x 4 + 3 left of #0 = 7 epochs
    assert lines[-1] == "  running: #0 1/4 epochs (val 0.250)  (about 01:10 left)"


DRIVE_BAR = r"""
import sys, optuna
from types import SimpleNamespace
from optuna.distributions import FloatDistribution
from optuna.trial import create_trial
from drltune.search.display import SearchBar, TimeLeft
from drltune.search.progress import Outcome, Progress
from drltune.search.ticker import EpochTicker

optuna.logging.set_verbosity(optuna.logging.WARNING)
study = optuna.create_study(direction="maximize")
left = TimeLeft(total=4, done=0, max_epochs=2)
bar = SearchBar("demo", 4, 0, left)
progress = Progress(study, 4, bar.write, running=lambda: 1, bar=bar, time_left=left)
ticker = EpochTicker(bar.write, time_left=left, bar=bar)
trial = lambda tid, n: SimpleNamespace(trial_id=tid, config={"optuna_trial": n, "trial": {"epochs": 2}})
ticker.on_trial_result(0, [], trial("a", 0), {"epoch": 0, "val_acc": 0.5})
ticker.on_trial_result(0, [], trial("b", 1), {"epoch": 0, "val_acc": 0.4})
ticker.on_trial_result(0, [], trial("a", 0), {"epoch": 1, "val_acc": 0.75})
study.add_trial(create_trial(value=0.75, params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-3, 0.1)}))
ticker.on_trial_complete(0, [], trial("a", 0))
progress(Outcome(0, "complete", 2, 0.75, values=(0.75,)))
bar.close()
print("isatty", sys.stdout.isatty())
"""


def in_pty(code: str) -> str:
    """Run `code` with its stdout and stderr on a pseudo-terminal; what the terminal received."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 150, 0, 0))  # 40 rows, 150 columns
    env = dict(os.environ)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=child, stdout=child, stderr=child, env=env,
                            close_fds=True)
    os.close(child)
    out = b""
    while True:
        ready, _, _ = select.select([main], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    proc.wait(60)
    os.close(main)
    return out.decode(errors="replace")


def test_on_a_terminal_one_bar_shows_finished_running_best_and_time_left():
    out = in_pty(DRIVE_BAR)
    assert "isatty True" in out
    frames = [f for f in out.replace("\r\n", "\n").split("\r") if "trials [" in f]  # the bar, redrawn in place
    assert any("0/4 trials" in f and "running #0 1/2 #1 1/2" in f for f in frames), frames
    assert "#0 complete after 2 epochs, best val_acc 0.7500" in out  # the trial's line, above the bar
    last = frames[-1].split("\n")[0].strip()
    assert "1/4 trials" in last and "25%" in last and "running #1 1/2 · best" in last  # #0 left the running ones
    assert "best val_acc 0.7500 (#0)" in last and "left]" in last


def test_the_cli_draws_the_bar_only_on_a_terminal():
    code = ("import drltune.search.runner as r\n"
            "r.run_search = lambda spec, **kw: print('bar', spec.bar)\n"
            "from drltune.cli import main\nmain(['search', '--trials', '1'])\n")
    assert "bar True" in in_pty(code)
    piped = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert piped.stdout.strip() == "bar False", piped.stderr


def test_plain_progress_lines_are_unchanged_without_a_bar():
    study = optuna.create_study(direction="maximize")
    lines: list[str] = []
    progress = Progress(study, 3, lines.append, running=lambda: 0)
    study.add_trial(create_trial(value=0.5, params={"lr": 0.01}, distributions={"lr": FloatDistribution(1e-3, 0.1)}))
    progress(Outcome(0, "complete", 2, 0.5, values=(0.5,)))
    assert lines == ["#0 complete after 2 epochs, best val_acc 0.5000\n"
                     "    [1/3] complete 1, pruned 0, failed 0, running 0 | new best 0.5000: #0 lr=0.01"]
