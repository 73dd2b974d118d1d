"""Per-epoch liveness during a search: one line, at most every `interval` seconds, of the running
trials' epochs and the time left, or, on a terminal, the search's bar brought up to date after
every epoch (a Ray Tune callback on the driver; it only prints)."""

from __future__ import annotations

import time
from typing import Any, Callable

from ray.tune import Callback

from drltune.search.display import SearchBar, TimeLeft


class EpochTicker(Callback):
    """`  running: #3 3/8 epochs (val 0.412) · #4 1/8 epochs (val 0.300)` whenever an epoch has
    ended and `interval` seconds have passed since the last such line."""

    def __init__(
        self,
        echo: Callable[[str], None],
        interval: float = 10.0,
        time_left: TimeLeft | None = None,
        bar: SearchBar | None = None,
    ) -> None:
        self.echo, self.interval, self.time_left, self.bar = echo, interval, time_left, bar
        self.latest: dict[
            str, tuple[int, int, int, float]
        ] = {}  # ray id -> (optuna #, epoch, epochs, val_acc)
        self.last_print = 0.0

    def on_trial_result(
        self, iteration: int, trials: list, trial: Any, result: dict, **info: Any
    ) -> None:
        if "epoch" not in result or "val_acc" not in result:
            return
        config = trial.config or {}
        epochs = int((config.get("trial") or {}).get("epochs") or 0)
        previous = self.latest.get(trial.trial_id)
        self.latest[trial.trial_id] = (
            config.get("optuna_trial", -1),
            int(result["epoch"]),
            epochs,
            float(result["val_acc"]),
        )
        if self.time_left is not None and (previous is None or previous[1] != int(result["epoch"])):
            self.time_left.epoch()  # Ray repeats a trial's last result: an epoch counts once
        if self.bar is not None:
            self.bar.epochs(self.latest)
            return
        now = time.monotonic()
        if now - self.last_print >= self.interval:
            self.last_print = now
            self.echo(self.line())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.latest.pop(trial.trial_id, None)
        if self.bar is not None:
            self.bar.epochs(self.latest)

    on_trial_error = on_trial_complete

    def line(self) -> str:
        parts = [
            f"#{number} {epoch + 1}/{epochs} epochs (val {acc:.3f})"
            for number, epoch, epochs, acc in sorted(self.latest.values())
        ]
        left = self.time_left.text(self.latest) if self.time_left is not None else None
        return "  running: " + " · ".join(parts) + (f"  ({left})" if left else "")
