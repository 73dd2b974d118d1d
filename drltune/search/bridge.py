"""Ray Tune <-> Optuna: Optuna samples and prunes, Ray runs; the driver is the only storage writer.

Ray's own `OptunaSearch` neither forwards intermediate values nor asks Optuna's pruner, and it
stores early-stopped trials as COMPLETE. Here:

* `OptunaBridge` (a Ray `Searcher`) asks the study for each new trial (define-by-run over the
  conditional space), and tells it the outcome: COMPLETE (value = best val accuracy), PRUNED,
  or FAIL with the error message; the trial's user attributes get what explore/export need.
* `PruningScheduler` (a FIFO scheduler) forwards every epoch's raw val_acc to the Optuna trial at
  step = epoch (0-based) and stops the Ray trial when the study's pruner says so.

Both run in the Tune controller's thread, so the study is never used concurrently.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from drltune.config import TrialConfig, resolve
from drltune.errors import DrltuneError
from drltune.search.liveness import SharedBudget
from drltune.search.progress import Outcome
from drltune.search.pruning import REINIT_ATTR
from drltune.search.space import SearchSpace
from drltune.search.study import retire
from drltune.search.trainable import FINAL_KEYS

MAX_INVALID_IN_A_ROW = 50


@dataclass
class LiveTrial:
    """Driver-side state of one running trial."""

    trial: optuna.Trial
    config: TrialConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    reinits: list[int] = field(default_factory=list)
    pruned: bool = False
    error: str | None = None


def trial_summary(history: list[dict[str, Any]]) -> dict[str, Any]:
    """best_epoch (first maximum of val_acc, as the trainer selects), epochs_run, per-modality accuracy."""
    if not history:
        return {"epochs_run": 0, "history": []}
    best = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i))
    return {"best_epoch": history[best]["epoch"], "epochs_run": len(history),
            "val_acc_audio": history[best].get("val_acc_audio"),
            "val_acc_visual": history[best].get("val_acc_visual"), "history": history}


class OptunaBridge(Searcher):
    """Ask/tell searcher over `study`; at most `budget` new trials in this run."""

    def __init__(self, study: optuna.Study, space: SearchSpace, base: TrialConfig, budget: int,
                 threads: int = 1, on_outcome: Callable[[Outcome], None] | None = None,
                 stop_reason: Callable[[], str | None] | None = None, shared: SharedBudget | None = None) -> None:
        super().__init__(metric="val_acc", mode="max")
        self.shared = shared  # the study-wide --trials budget when several drivers may join
        self.study, self.space, self.base = study, space, base
        self.budget, self.threads = budget, threads
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.stop_reason = stop_reason or (lambda: None)
        self.started = 0
        self.live: dict[str, LiveTrial] = {}
        self.before_tell: Callable[[optuna.Trial, TrialState, dict[str, Any]], None] = lambda *args: None

    # Ray pickles its searcher into the experiment folder. The Optuna storage is the state we
    # resume from, so the study (with its URL, maybe credentials) stays out of those pickles.
    def __getstate__(self) -> dict[str, Any]:
        runtime = ("study", "live", "on_outcome", "stop_reason", "shared", "before_tell")
        return {k: v for k, v in self.__dict__.items() if k not in runtime}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to write: the Optuna storage already holds every finished and running trial."""

    def restore(self, checkpoint_path: str) -> None:
        raise DrltuneError("a search resumes from its Optuna study: run the same command again")

    # ---- Searcher API --------------------------------------------------------------------------
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for _ in range(MAX_INVALID_IN_A_ROW):
            if self.stop_reason() or self.started >= self.budget:
                return Searcher.FINISHED
            if self.shared is not None:
                state = self.shared.state()
                if state != "open":
                    return Searcher.FINISHED if state == "done" else None  # None: ask again later
            trial = self.study.ask()
            if self.shared is not None and not self.shared.claim(trial):
                return None
            self.started += 1
            try:
                cfg = self.space.config_for(trial, self.base)
                if cfg.threads is None:  # part of a CPU result: stored so that an exported trial reproduces
                    cfg = cfg.replace(threads=self.threads)
                resolve(cfg)
            except DrltuneError as exc:  # e.g. a method that cannot run with the sampled fusion
                self._tell(trial, TrialState.FAIL, {"error": f"invalid configuration: {exc}"})
                self.on_outcome(Outcome(trial.number, "failed", 0, None, f"invalid configuration: {exc}"))
                continue
            trial.set_user_attr("ray_trial_id", trial_id)
            trial.set_user_attr("config", cfg.to_dict())
            self.live[trial_id] = LiveTrial(trial, cfg)
            return {"trial": cfg.to_dict(), "optuna_trial": trial.number}
        raise DrltuneError(f"{MAX_INVALID_IN_A_ROW} sampled configurations in a row were invalid; "
                           "fix the search space (see the trials' `error` attribute)")

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass  # the scheduler forwards epochs (it also sees the results it stops on)

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        live = self.live.pop(trial_id, None)
        if live is None:
            return
        attrs = trial_summary(live.history)
        if result and result.get("resumed_from_epoch") is not None:  # a dead worker was retried (--max-failures)
            attrs["resumed_from_epoch"] = result["resumed_from_epoch"]
        epochs = attrs["epochs_run"]
        if self.stop_reason():  # Ctrl-C also reaches the workers: what ends now is an interruption
            self._interrupt(live, self.stop_reason())
        elif error or (result and result.get("error")):
            message = (result or {}).get("error") or live.error or "the trial's worker failed without an error message"
            self._tell(live.trial, TrialState.FAIL, {**attrs, "error": message})
            self.on_outcome(Outcome(live.trial.number, "failed", epochs, None, message))
        elif live.pruned:
            self._tell(live.trial, TrialState.PRUNED, attrs)
            self.on_outcome(Outcome(live.trial.number, "pruned", epochs, max(r["val_acc"] for r in live.history)))
        elif result and all(key in result for key in FINAL_KEYS):
            final = {key: result[key] for key in FINAL_KEYS if key != "best_val_acc"}
            self._tell(live.trial, TrialState.COMPLETE, {**attrs, **final}, value=float(result["best_val_acc"]))
            self.on_outcome(Outcome(live.trial.number, "complete", epochs, float(result["best_val_acc"])))
        else:
            self._interrupt(live, "interrupted: the search was stopped before this trial finished")

    # ---- called by PruningScheduler ---------------------------------------------------------
    def on_epoch(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Forward one epoch's val_acc (step = 0-based epoch); True when the trial should stop."""
        live = self.live.get(trial_id)
        if live is None or "epoch" not in result:
            return False
        step = int(result["epoch"])
        if live.history and step <= live.history[-1]["epoch"]:
            return False  # Ray repeats a function trainable's last result
        record = json.loads(result["record"])
        live.history.append(record)
        live.trial.report(float(result["val_acc"]), step)
        if record.get("reinit"):
            live.reinits.append(step)
            live.trial.set_user_attr(REINIT_ATTR, live.reinits)
        if live.trial.should_prune():
            live.pruned = True
        return live.pruned

    def on_error(self, trial_id: str, message: str) -> None:
        if trial_id in self.live:
            self.live[trial_id].error = message

    # ---- shutdown -------------------------------------------------------------------------------
    def close_open(self, reason: str) -> int:
        """Close every trial still running in Optuna (Ctrl-C, --timeout) so it is retried next run."""
        n = len(self.live)
        for trial_id in list(self.live):
            self._interrupt(self.live.pop(trial_id), reason)
        return n

    def _interrupt(self, live: LiveTrial, reason: str) -> None:
        reason = reason if reason.startswith("interrupted") else f"interrupted: {reason}"
        retire(self.study, live.trial._trial_id, live.trial.number, live.trial.params, reason)
        self.on_outcome(Outcome(live.trial.number, "interrupted", len(live.history), None, reason))

    def _tell(self, trial: optuna.Trial, state: TrialState, attrs: dict[str, Any],
              value: float | None = None) -> None:
        for key, val in attrs.items():
            trial.set_user_attr(key, val)
        trial.set_user_attr("finished_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        self.before_tell(trial, state, attrs)  # e.g. dashboard artifacts, which a finished trial refuses
        self.study.tell(trial, value, state=state)


class StopSearch(Stopper):
    """Ends the whole run (no new trials, running ones stopped) once the bridge has a stop reason."""

    def __init__(self, bridge: OptunaBridge) -> None:
        self.bridge = bridge

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return False

    def stop_all(self) -> bool:
        return self.bridge.stop_reason() is not None


class PruningScheduler(FIFOScheduler):
    """FIFO scheduling; after every epoch, the Optuna pruner decides whether the trial goes on."""

    def __init__(self, bridge: OptunaBridge) -> None:
        super().__init__()
        self.bridge = bridge  # Tune keeps this same object as its searcher (it wraps, never copies)

    def on_trial_result(self, tune_controller: Any, trial: Trial, result: dict[str, Any]) -> str:
        if self.bridge.on_epoch(trial.trial_id, result):
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_error(self, tune_controller: Any, trial: Trial) -> None:
        self.bridge.on_error(trial.trial_id, error_message(trial))


def error_message(trial: Trial) -> str:
    """The last line of the worker's traceback (e.g. `NonFiniteLoss: loss became nan ...`)."""
    text = trial.get_error() or ""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    for line in reversed(lines):
        if not line.startswith(("Failure #", "Traceback", "File ", "^")):
            return line[:1000]
    return "the trial's worker failed"


def trial_name(trial: Trial) -> str:
    """Ray's name and folder for a trial: the Optuna trial number it runs."""
    return f"optuna_trial_{trial.config.get('optuna_trial', trial.trial_id)}"
