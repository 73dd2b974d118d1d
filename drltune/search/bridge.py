"""Ray Tune <-> Optuna: Optuna samples and prunes, Ray runs; the driver is the only storage writer.

Ray's own `OptunaSearch` neither forwards intermediate values nor asks Optuna's pruner, and it
stores early-stopped trials as COMPLETE. Here:

* `OptunaBridge` (a Ray `Searcher`) asks the study for each new trial (define-by-run over the
  conditional space), and tells it the outcome: COMPLETE (values = the objective's, at the
  selected epoch), PRUNED, or FAIL with the error message; the trial's user attributes get what
  explore/export need.
* `PruningScheduler` (a FIFO scheduler) forwards every epoch's raw value of the first objective
  (val_acc by default; objective.py) to the Optuna trial at step = epoch (0-based) and stops the
  Ray trial when the study's pruner says so. A two-objective study takes no intermediate values
  (Optuna refuses them) and is never pruned.

Both run in the Tune controller's thread, so the study is never used concurrently by them (the
heartbeat thread only records heartbeats). No storage error escapes into Tune: one that outlasts
the storage's patience (or a failure budget that runs out) *halts* the search, which stops every
trial and leaves them to be retried by the next run.
"""

from __future__ import annotations

import collections
import functools
import json
import math
import re
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.trial import TrialState
from ray.tune.experiment import Trial
from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from drltune import record
from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.resolve import resolve
from drltune.search.checkpoints import CheckpointStore, lineage_key
from drltune.search.liveness import ORPHAN_S, SharedBudget
from drltune.search.objective import DEFAULT, Objective, parse_objective
from drltune.search.optuna_private import storage_of, trial_id_of
from drltune.search.progress import Outcome
from drltune.search.space import SearchSpace
from drltune.search.storage import HALT_S, StorageUnavailable
from drltune.search.study import lineage, retire
from drltune.search.tracked import SearchTracking
from drltune.search.trainable import RESTORED

MAX_INVALID_IN_A_ROW = 50
SAME_ERROR_STOP = (
    5  # this many failures in a row with one error stop the search (with --max-failed-trials)
)
OOM_ADVICE = (
    "; the trials do not fit the device: run fewer at a time (--concurrent) or give each "
    "more of a GPU (--gpus-per-trial)"
)


@dataclass
class FailureBudget:
    """`--max-failed-trials`: failed trials (this run) allowed before the search gives up, sooner
    when the same error repeats (e.g. CUDA out of memory on every trial)."""

    limit: int
    errors: collections.Counter = field(default_factory=collections.Counter)
    first: dict[str, str] = field(default_factory=dict)  # each kind of error as it was first seen
    streak: list[str] = field(default_factory=list)

    def add(self, error: str) -> str | None:
        """Count one failure; the reason to stop, if the budget is spent."""
        key = re.sub(r"\d+", "#", error)[
            :300
        ]  # the same fault at another epoch or step is the same error
        self.errors[key] += 1
        self.first.setdefault(key, error[:300])
        self.streak = [*self.streak, key] if self.streak and self.streak[-1] == key else [key]
        if len(self.streak) >= min(self.limit, SAME_ERROR_STOP):
            return f"{len(self.streak)} trials in a row failed with: {self._show(key)}"
        total = sum(self.errors.values())
        if total >= self.limit:
            common, n = self.errors.most_common(1)[0]
            return (
                f"{total} trials failed (--max-failed-trials {self.limit}); "
                f"most common error ({n}x): {self._show(common)}"
            )
        return None

    def _show(self, key: str) -> str:
        return self.first[key] + (OOM_ADVICE if "out of memory" in key.lower() else "")

    def success(self) -> None:
        self.streak = []


@dataclass
class LiveTrial:
    """Driver-side state of one running trial."""

    trial: optuna.Trial
    config: TrialConfig
    history: list[dict[str, Any]] = field(default_factory=list)
    reinits: list[int] = field(default_factory=list)
    key: str = ""  # its checkpoint folder (shared by its retries)
    root: int = -1  # the number of the first trial of its retry chain
    ray_id: str = ""  # its Ray trial id, its key in OptunaBridge.live
    node: str | None = None
    pruned: bool = False
    error: str | None = None


def _halting_on_storage_loss(default: Any) -> Callable:
    """Tune callbacks must not raise: a storage that stays down halts the search instead."""

    def wrap(method: Callable) -> Callable:
        @functools.wraps(method)
        def call(self: "OptunaBridge", *args: Any, **kwargs: Any) -> Any:
            try:
                return method(self, *args, **kwargs)
            except StorageUnavailable as exc:
                self.storage_lost = True  # no more writes: each would wait out the patience again
                self.halt(str(exc))
                return default() if callable(default) else default

        return call

    return wrap


class OptunaBridge(Searcher):
    """Ask/tell searcher over `study`, up to the study-wide `shared` budget of --trials."""

    def __init__(
        self,
        study: optuna.Study,
        space: SearchSpace,
        base: TrialConfig,
        shared: SharedBudget,
        threads: int = 1,
        on_outcome: Callable[[Outcome], None] | None = None,
        stop_reason: Callable[[], str | None] | None = None,
        checkpoints: CheckpointStore | None = None,
        checkpoint_every: int = 1,
        max_failed: int = 10,
        heartbeat_age: Callable[[], float] | None = None,
        note: Callable[[str], None] | None = None,
        objective: Objective | None = None,
    ) -> None:
        super().__init__(
            metric="val_acc", mode="max"
        )  # Ray's own view; Optuna's objective is `objective`
        self.objective = objective or parse_objective(DEFAULT)
        self.shared = shared  # the study-wide --trials budget when several drivers may join
        self.study, self.space, self.base = study, space, base
        self.threads = threads
        self.on_outcome = on_outcome or (lambda outcome: None)
        self.user_stop = stop_reason or (lambda: None)
        self.checkpoints, self.checkpoint_every = checkpoints, checkpoint_every
        self.failures = FailureBudget(max_failed)
        self.heartbeat_age = heartbeat_age or (lambda: 0.0)
        self.note = note or (lambda line: None)
        self._told_waiting = False
        self.fatal: str | None = (
            None  # why the search halts on its own (storage lost, failure budget)
        )
        self.storage_lost = False
        self.live: dict[str, LiveTrial] = {}
        self.before_tell: Callable[[optuna.Trial, TrialState, dict[str, Any]], None] = (
            lambda *args: None
        )
        self.tracking: SearchTracking | None = None  # --tracker: each trial's epochs and outcome

    # Ray pickles its searcher into the experiment folder. The Optuna storage is the state we
    # resume from, so the study (with its URL, maybe credentials) stays out of those pickles.
    def __getstate__(self) -> dict[str, Any]:
        runtime = (
            "study",
            "live",
            "on_outcome",
            "user_stop",
            "shared",
            "heartbeat_age",
            "checkpoints",
            "before_tell",
            "note",
            "tracking",
        )
        return {k: v for k, v in self.__dict__.items() if k not in runtime}

    def save(self, checkpoint_path: str) -> None:
        """Nothing to write: the Optuna storage already holds every finished and running trial."""

    def restore(self, checkpoint_path: str) -> None:
        raise DrltuneError("a search resumes from its Optuna study: run the same command again")

    def halt(self, reason: str) -> None:
        """Stop the whole search (no new trials; running ones are cut and retried next run)."""
        if self.fatal is None:
            self.fatal = reason

    def stop_reason(self) -> str | None:
        return self.user_stop() or self.fatal

    # ---- Searcher API --------------------------------------------------------------------------
    @_halting_on_storage_loss(lambda: Searcher.FINISHED)
    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        for _ in range(MAX_INVALID_IN_A_ROW):
            if self.stop_reason():
                return Searcher.FINISHED
            state = self.shared.state()
            if (
                state == "wait"
                and not self.live
                and self.shared.held_by_others
                and not self._told_waiting
            ):
                self._told_waiting = True
                held = ", ".join(f"#{n}" for n in self.shared.held_by_others)
                self.note(
                    f"waiting: the last places of --trials {self.shared.target} are held by "
                    f"{held}, run by another driver; if it is gone they are retried here within "
                    f"{math.ceil(ORPHAN_S / 60)} min"
                )
            if state != "open":
                return Searcher.FINISHED if state == "done" else None  # None: ask again later
            self._told_waiting = False
            with (
                warnings.catch_warnings()
            ):  # Optuna's heartbeat is meant for study.optimize; here we beat ourselves
                warnings.filterwarnings("ignore", message="Heartbeat of storage")
                trial = self.study.ask()
            if not self.shared.claim(trial):
                return None
            try:
                cfg = self.space.config_for(trial, self.base)
                if (
                    cfg.threads is None
                ):  # part of a CPU result: stored so that an exported trial reproduces
                    cfg = cfg.replace(threads=self.threads)
                resolve(cfg)
            except DrltuneError as exc:  # e.g. a method that cannot run with the sampled fusion
                self._tell(trial, TrialState.FAIL, {record.ERROR: f"invalid configuration: {exc}"})
                self.on_outcome(
                    Outcome(trial.number, "failed", 0, None, f"invalid configuration: {exc}")
                )
                continue
            root = lineage(storage_of(self.study).get_trial(trial_id_of(trial)))
            key = lineage_key(root)
            trial.set_user_attr(record.RAY_TRIAL_ID, trial_id)
            trial.set_user_attr(record.CONFIG, cfg.to_dict())
            self.live[trial_id] = LiveTrial(trial, cfg, key=key, root=root, ray_id=trial_id)
            ckpt = None
            if self.checkpoints is not None and self.checkpoint_every > 0:
                ckpt = {
                    "root": self.checkpoints.root,
                    "key": key,
                    "every": self.checkpoint_every,
                    "owner": self.checkpoints.owner,
                }
            return {"trial": cfg.to_dict(), "optuna_trial": trial.number, "checkpoint": ckpt}
        raise DrltuneError(
            f"{MAX_INVALID_IN_A_ROW} sampled configurations in a row were invalid; "
            "fix the search space (see the trials' `error` attribute)"
        )

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        pass  # the scheduler forwards epochs (it also sees the results it stops on)

    @_halting_on_storage_loss(None)
    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Store how the trial ended. It leaves `live` (the heartbeat's list) only once that is
        stored: the tell is a dozen writes, which a slow storage may stretch toward the 90 s after
        which other drivers take a trial without heartbeats for stale."""
        live = self.live.get(trial_id)
        try:
            if (
                live is not None and not self.storage_lost
            ):  # a lost one stays RUNNING: the next run retires it
                self._close(live, result, error)
        finally:
            self.live.pop(trial_id, None)

    def _close(self, live: LiveTrial, result: dict[str, Any] | None, error: bool) -> None:
        """Tell the outcome Ray's last result says (each branch takes the trial out of `live`)."""
        attrs = record.trial_summary(live.history)
        if (
            result and result.get(record.RESUMED_FROM_EPOCH) is not None
        ):  # resumed from its checkpoint
            attrs[record.RESUMED_FROM_EPOCH] = result[record.RESUMED_FROM_EPOCH]
        epochs = attrs[record.EPOCHS_RUN]
        # What a trial reached before a stop is kept: pruned and finished trials are stored as such.
        first = self.objective.first
        if live.pruned:
            if self._tell(live, TrialState.PRUNED, attrs):
                best = (max if first.maximize else min)(first.of_epoch(r) for r in live.history)
                self.on_outcome(Outcome(live.trial.number, "pruned", epochs, best))
        elif result and all(key in result for key in record.FINAL_KEYS) and not result.get("error"):
            final = {key: result[key] for key in record.FINAL_KEYS if key != "best_val_acc"}
            # val_acc's value stays the trainer's best_val_acc; the others are read at that same
            # epoch
            values = (
                [float(result["best_val_acc"])]
                if self.objective.names == [DEFAULT]
                else self.objective.values(live.history, int(result["best_epoch"]))
            )
            if self._tell(live, TrialState.COMPLETE, {**attrs, **final}, value=values):
                self.failures.success()
                self.on_outcome(
                    Outcome(live.trial.number, "complete", epochs, values[0], values=tuple(values))
                )
        elif (
            stop := self.stop_reason()
        ):  # Ctrl-C also reaches the workers: what ends now is an interruption
            self._interrupt(live, stop)
        elif error or (result and result.get("error")):
            message = (
                (result or {}).get("error")
                or live.error
                or "the trial's worker failed without an error message"
            )
            if self._tell(live, TrialState.FAIL, {**attrs, record.ERROR: message}):
                self.on_outcome(Outcome(live.trial.number, "failed", epochs, None, message))
                reason = self.failures.add(message)
                if reason:
                    self.halt(reason)
        else:
            self._interrupt(live, "interrupted: the search was stopped before this trial finished")

    # ---- called by PruningScheduler ---------------------------------------------------------
    @_halting_on_storage_loss(True)
    def on_epoch(self, trial_id: str, result: dict[str, Any]) -> bool:
        """Forward one epoch's first-objective value (step = 0-based epoch); True when the trial
        should stop.

        A resumed trial's first result also carries the epochs its checkpoint restored: they are
        recorded first, so that its history, the pruner's view and the re-init grace (a dip right
        after a re-init before the cut) cover the whole trial, not only the retry's tail."""
        live = self.live.get(trial_id)
        if live is None or "epoch" not in result:
            return False
        if self.heartbeat_age() > HALT_S:  # other drivers may soon be retrying this driver's trials
            self.halt(
                f"this driver could not record its heartbeats for {self.heartbeat_age():.0f} s; "
                "its trials were stopped (the same command resumes)"
            )
            return True
        step = int(result["epoch"])
        if live.history and step <= live.history[-1]["epoch"]:
            return False  # Ray repeats a function trainable's last result
        last = live.history[-1]["epoch"] if live.history else -1
        epochs = [r for r in json.loads(result.get(RESTORED) or "[]") if last < r["epoch"] < step]
        epochs.append(json.loads(result["record"]))
        live.history.extend(epochs)
        if self.tracking is not None:
            self.tracking.epochs(live, epochs)
        try:
            if result.get("node_id") and result["node_id"] != live.node:
                live.node = result["node_id"]
                live.trial.set_user_attr(record.RAY_NODE, live.node)
                live.trial.set_user_attr(record.RAY_NODE_IP, result.get("node_ip"))
            if (
                not self.objective.multi
            ):  # Optuna takes no intermediate values in a multi-objective study
                for epoch_record in epochs:
                    live.trial.report(
                        self.objective.first.of_epoch(epoch_record), int(epoch_record["epoch"])
                    )
            reinits = [int(r["epoch"]) for r in epochs if r.get("reinit")]
            if reinits:
                live.reinits.extend(reinits)
                live.trial.set_user_attr(record.REINIT_EPOCHS, live.reinits)
            if not self.objective.multi and live.trial.should_prune():
                live.pruned = True
        except (
            UpdateFinishedTrialError
        ):  # another driver retired it (this one lost the storage for a while)
            self.live.pop(trial_id)
            self._dropped(live)
            return True
        return live.pruned

    def on_error(self, trial_id: str, message: str) -> None:
        if trial_id in self.live:
            self.live[trial_id].error = message

    # ---- shutdown -------------------------------------------------------------------------------
    def close_open(self, reason: str) -> int:
        """Close every trial still running in Optuna (Ctrl-C, --timeout, a halt) so it is retried
        next run; with the storage gone they stay RUNNING and the next run retires them."""
        n = len(self.live)
        for trial_id in list(self.live):
            live = self.live.pop(trial_id)
            if self.storage_lost:
                continue
            try:
                self._interrupt(live, reason)
            except StorageUnavailable:
                self.storage_lost = True
        return n

    def _interrupt(self, live: LiveTrial, reason: str) -> None:
        reason = reason if reason.startswith("interrupted") else f"interrupted: {reason}"
        retire(
            self.study, trial_id_of(live.trial), reason, max_retries=None
        )  # a clean stop: always retried
        if self.tracking is not None:
            self.tracking.end(live, "interrupted", {record.ERROR: reason})
        self.live.pop(
            live.ray_id, None
        )  # stored: the outcome's progress line no longer counts it running
        self.on_outcome(Outcome(live.trial.number, "interrupted", len(live.history), None, reason))

    def _dropped(self, live: LiveTrial) -> None:
        """Another driver found the trial stale (this one was cut off from the storage) and retired
        it; its retry runs from the checkpoint, so what this driver saw of it is dropped."""
        self.on_outcome(
            Outcome(
                live.trial.number,
                "interrupted",
                len(live.history),
                None,
                "closed by another driver; dropped here",
            )
        )

    def _tell(
        self,
        live: LiveTrial | optuna.Trial,
        state: TrialState,
        attrs: dict[str, Any],
        value: list[float] | None = None,
    ) -> bool:
        """Store the outcome; False (and the trial dropped) when another driver closed it first."""
        trial = live.trial if isinstance(live, LiveTrial) else live
        try:
            for key, val in attrs.items():
                trial.set_user_attr(key, val)
            trial.set_user_attr(record.FINISHED_AT, time.strftime("%Y-%m-%dT%H:%M:%S"))
            self.before_tell(
                trial, state, attrs
            )  # e.g. dashboard artifacts, which a finished trial refuses
            self.study.tell(trial, value, state=state)
        except (
            UpdateFinishedTrialError,
            ValueError,
        ) as exc:  # closed elsewhere while this one was cut off
            stored = storage_of(self.study).get_trial(trial_id_of(trial))
            if isinstance(exc, ValueError) and not stored.state.is_finished():
                # Optuna's "Cannot tell a FAIL trial" is the race; any other ValueError is a bug
                raise
            if isinstance(live, LiveTrial):
                self.live.pop(live.ray_id, None)
                self._dropped(live)
            return False
        if isinstance(live, LiveTrial):
            self.live.pop(
                live.ray_id, None
            )  # stored: the outcome's progress line no longer counts it running
            if self.tracking is not None:
                summary = dict(
                    attrs
                )  # and the objective's values by name (val_acc's is the trainer's best_val_acc)
                summary.update(
                    {
                        "best_val_acc" if name == DEFAULT else name: v
                        for name, v in zip(self.objective.names, value or [])
                    }
                )
                self.tracking.end(live, record.STATE_LABELS[state.name], summary)
            if self.checkpoints is not None:
                self.checkpoints.delete(
                    live.key
                )  # a finished trial never resumes: its checkpoint goes
        return True


class StopSearch(Stopper):
    """Ends the whole run (no new trials, running ones stopped) once the bridge has a stop
    reason."""

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
