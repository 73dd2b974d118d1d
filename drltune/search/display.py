"""The whole search at a glance: finished/total, the running trials' epochs, the best, time left.

On a terminal this is one tqdm bar that stays at the bottom while the trials' lines scroll above
it (`tqdm.write`); elsewhere (a log file, a pipe, a test) the search prints its plain lines
(progress.py, ticker.py), which `TimeLeft` adds its estimate to.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Callable

from tqdm import tqdm

RunningTrials = dict[
    str, tuple[int, int, int, float]
]  # ray id -> (optuna #, epoch (0-based), epochs, val_acc)


class TimeLeft:
    """Epochs still to train divided by the epochs per second this run has trained so far.

    An upper bound when trials get pruned (a pruned trial's unrun epochs are counted as work);
    nothing until the first epoch ends."""

    def __init__(
        self, total: int, done: int, max_epochs: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.total, self.done, self.max_epochs, self.clock = total, done, max_epochs, clock
        self.start = clock()
        self.epochs_seen = 0

    def epoch(self) -> None:
        self.epochs_seen += 1

    def seconds(self, running: RunningTrials) -> float | None:
        elapsed = self.clock() - self.start
        if not self.epochs_seen or elapsed <= 0:
            return None
        unstarted = max(0, self.total - self.done - len(running))
        left = unstarted * self.max_epochs + sum(
            max(0, epochs - epoch - 1) for _, epoch, epochs, _ in running.values()
        )
        return left / (self.epochs_seen / elapsed)

    def text(self, running: RunningTrials) -> str | None:
        """`about 3:10 left` (at most: pruning ends trials sooner)."""
        seconds = self.seconds(running)
        return (
            None if not seconds else f"about {tqdm.format_interval(seconds)} left"
        )  # 0: nothing left


def running_text(running: RunningTrials) -> str:
    return " ".join(
        f"#{number} {epoch + 1}/{epochs}" for number, epoch, epochs, _ in sorted(running.values())
    )


class SearchBar:
    """One tqdm bar over --trials:
    `synthetic-default  40%|####      | 2/5 trials [00:31, running #3 1/2
    #4 2/2 · best 0.8123 (#1) · about 0:40 left]`."""

    def __init__(
        self, name: str, total: int, done: int, time_left: TimeLeft, file: IO[str] | None = None
    ) -> None:
        self.file = file or sys.stdout
        self.time_left = time_left
        self.running: RunningTrials = {}
        self.best = ""
        self.bar = tqdm(
            total=total,
            initial=done,
            desc=name,
            unit="trial",
            file=self.file,
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar:20}| {n_fmt}/{total_fmt} trials "
            "[{elapsed}{postfix}]",
            mininterval=0.5,
        )

    def write(self, line: str) -> None:
        """A line above the bar (the bar is drawn again below it)."""
        self.bar.write(line, file=self.file)

    def finished(self, counted: int, best: str) -> None:
        self.bar.n, self.best = counted, best
        self._postfix()

    def epochs(self, running: RunningTrials) -> None:
        self.running = dict(running)
        self._postfix()

    def _postfix(self) -> None:
        parts = [
            f"running {running_text(self.running)}" if self.running else "",
            self.best,
            self.time_left.text(self.running) or "",
        ]
        self.bar.set_postfix_str(" · ".join(p for p in parts if p), refresh=True)

    def close(self) -> None:
        self.bar.close()
