"""Per-epoch liveness during a search: one line, at most every `interval` seconds, of the running
trials' epochs (a Ray Tune callback on the driver; it only prints)."""
from __future__ import annotations

import time
from typing import Any, Callable

from ray.tune import Callback


class EpochTicker(Callback):
    """`  running: #3 3/8 epochs (val 0.412) · #4 1/8 epochs (val 0.300)` whenever an epoch has
    ended and `interval` seconds have passed since the last such line."""

    def __init__(self, echo: Callable[[str], None], interval: float = 10.0) -> None:
        self.echo, self.interval = echo, interval
        self.latest: dict[str, tuple[int, int, int, float]] = {}  # ray id -> (optuna #, epoch, epochs, val_acc)
        self.last_print = 0.0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if "epoch" not in result or "val_acc" not in result:
            return
        config = trial.config or {}
        epochs = int((config.get("trial") or {}).get("epochs") or 0)
        self.latest[trial.trial_id] = (config.get("optuna_trial", -1), int(result["epoch"]), epochs,
                                       float(result["val_acc"]))
        now = time.monotonic()
        if now - self.last_print >= self.interval:
            self.last_print = now
            self.echo(self.line())

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.latest.pop(trial.trial_id, None)

    on_trial_error = on_trial_complete

    def line(self) -> str:
        parts = [f"#{number} {epoch + 1}/{epochs} epochs (val {acc:.3f})"
                 for number, epoch, epochs, acc in sorted(self.latest.values())]
        return "  running: " + " · ".join(parts)
