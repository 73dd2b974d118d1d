"""One search's Ray Tune run: Ray started or joined, each trial's CPUs and GPUs sized and
checked, Optuna's bridge and Tune's tuner wired together, and the run closed cleanly on Ctrl-C,
--timeout or a fatal error.

`runner.py` holds the recipe and calls `run_tune`; this module never imports the runner: it reads
the spec and plan through `TuneOptions` and `TunePlan`, which `SearchSpec` and `SearchPlan` meet.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

from drltune.config import TrialConfig
from drltune.data import load_dataset
from drltune.errors import DrltuneError, RuntimeFailure
from drltune.resolve import resolve
from drltune.search.checkpoints import CheckpointStore, sweep_checkpoints
from drltune.search.gpu_plan import (
    check_memory_fits,
    cpus_split,
    largest,
    local_gpu_bytes,
    ray_nodes,
    trial_memory,
)
from drltune.search.objective import Objective
from drltune.search.optuna_private import trial_id_of
from drltune.search.ray_start import auto_gpus, init_ray, joins_cluster, quiet_ray_env
from drltune.search.resources import check_fits
from drltune.search.space import SearchSpace

if TYPE_CHECKING:
    import optuna

    from drltune.search.bridge import OptunaBridge
    from drltune.search.dashboard_view import DashboardPublisher
    from drltune.search.display import SearchBar, TimeLeft
    from drltune.search.liveness import Heartbeat


class TuneOptions(Protocol):
    """The options of `drltune search` that its Tune run reads (runner.SearchSpec has them)."""

    trials: int
    concurrent: int
    cpus_per_trial: float | None
    gpus_per_trial: float | None
    address: str | None
    timeout: float | None
    max_failures: int
    max_retries: int
    max_failed_trials: int | None
    checkpoint_every: int
    storage: str
    storage_path: str | None
    bar: bool
    tracker: str
    tracker_uri: str | None


class TunePlan(Protocol):
    """What the trials run (runner.SearchPlan has it)."""

    objective: Objective
    space: SearchSpace
    base: TrialConfig
    max_epochs: int


def failure_limit(max_failed_trials: int | None, trials: int) -> int:
    """--max-failed-trials, else max(10, --trials / 10)."""
    return max_failed_trials if max_failed_trials is not None else max(10, trials // 10)


class _Stop:
    """Ctrl-C and --timeout end the run cleanly: no new trials, running ones stopped and retired."""

    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interrupted = threading.Event()
        self.fired: str | None = (
            None  # the reason the search loop saw (a deadline passed later stopped nothing)
        )

    def reason(self) -> str | None:
        if self.interrupted.is_set():
            self.fired = "stopped by Ctrl-C"
        elif self.fired is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.fired = "stopped by --timeout"
        return self.fired

    def outcome(self) -> str | None:
        """After the run: what stopped it, if anything (Ctrl-C during the shutdown counts too)."""
        return "stopped by Ctrl-C" if self.interrupted.is_set() else self.fired

    @contextmanager
    def on_ctrl_c(self, echo: Callable[[str], None]) -> Iterator[None]:
        """While inside: the first Ctrl-C stops the search cleanly, a second one aborts (main thread
        only)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous_handler = signal.getsignal(signal.SIGINT)

        def on_sigint(signum: int, frame: Any) -> None:
            echo(
                "stopping: running trials will be closed and retried next time (Ctrl-C again to "
                "abort)"
            )
            self.interrupted.set()
            signal.signal(signal.SIGINT, previous_handler)

        signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous_handler)


def run_tune(
    spec: TuneOptions,
    plan: TunePlan,
    study: optuna.Study,
    store: CheckpointStore,
    ray_root: str,
    echo: Callable[[str], None],
) -> None:
    """Start (or join) Ray, run the trials until --trials, a stop or a fatal error, then close what
    is still running (queued for the next run) and shut down what this call started."""
    quiet_ray_env()
    import ray

    from drltune.search.display import SearchBar, TimeLeft
    from drltune.search.study import counted
    from drltune.search.ticker import EpochTicker
    from drltune.search.tune_sync import tolerate_state_sync

    stop = _Stop(spec.timeout)
    time_left = TimeLeft(spec.trials, counted(study), plan.max_epochs)
    bar = SearchBar(study.study_name, spec.trials, counted(study), time_left) if spec.bar else None
    plain_echo, echo = echo, (bar.write if bar is not None else echo)  # lines go above the bar
    bridge, heartbeat, publish = _bridge(spec, plan, study, store, stop, time_left, bar, echo)
    started_ray = not ray.is_initialized()
    try:
        if started_ray:
            init_ray(ray, spec.address, spec.concurrent, spec.cpus_per_trial or 1)
        cpus, gpus = _trial_resources(spec, plan, ray, echo)
    except DrltuneError:
        if started_ray and ray.is_initialized():
            ray.shutdown()
        if bar is not None:
            bar.close()
        raise
    bridge.threads = max(1, math.floor(cpus))  # each trial's torch and k-means threads
    tuner = _tuner(
        spec,
        study.study_name,
        bridge,
        cpus,
        gpus,
        ray_root,
        callbacks=[EpochTicker(echo, time_left=time_left, bar=bar)],
    )
    try:
        with stop.on_ctrl_c(echo), warnings.catch_warnings(), heartbeat, tolerate_state_sync(echo):
            warnings.simplefilter("ignore")
            tuner.fit()
    finally:
        closed = bridge.close_open(
            stop.outcome()
            or bridge.fatal
            or "interrupted: the search ended before this trial finished"
        )
        if not bridge.storage_lost:
            publish.finish()
            try:
                sweep_checkpoints(study, store)
            except Exception as exc:  # never hide the search's own outcome behind a clean-up error
                echo(f"warning: could not remove finished trials' checkpoints: {exc}")
        if started_ray:
            ray.shutdown()
        if bar is not None:
            bar.close()
            echo = plain_echo
    if stop.outcome():
        echo(f"{stop.outcome()}: {closed} running trials closed and queued for the next run")
        if stop.interrupted.is_set():
            raise KeyboardInterrupt
    if bridge.fatal:
        if closed:
            echo(f"stopping: {closed} running trials closed; the same command resumes them")
        raise RuntimeFailure(bridge.fatal)


def _bridge(
    spec: TuneOptions,
    plan: TunePlan,
    study: optuna.Study,
    store: CheckpointStore,
    stop: _Stop,
    time_left: TimeLeft,
    bar: SearchBar | None,
    echo: Callable[[str], None],
) -> tuple[OptunaBridge, Heartbeat, DashboardPublisher]:
    """The Optuna side of the run: the bridge that asks and tells, its progress lines, the
    dashboard's notes and artifacts, the heartbeat of its trials, and the experiment tracker."""
    from drltune.search.bridge import OptunaBridge
    from drltune.search.dashboard_view import DashboardPublisher
    from drltune.search.liveness import Heartbeat, SharedBudget
    from drltune.search.progress import Outcome, Progress

    progress = Progress(
        study, spec.trials, echo, running=lambda: len(bridge.live), bar=bar, time_left=time_left
    )
    publish = DashboardPublisher(study, spec.storage, warn=echo)
    heartbeat = Heartbeat(study, lambda: [trial_id_of(t.trial) for t in list(bridge.live.values())])

    def on_outcome(outcome: Outcome) -> None:
        progress(outcome)
        publish(outcome.number)

    bridge = OptunaBridge(
        study,
        plan.space,
        plan.base,
        SharedBudget(study, spec.trials, spec.max_retries),
        on_outcome=on_outcome,
        stop_reason=stop.reason,
        checkpoints=store,
        checkpoint_every=spec.checkpoint_every,
        max_failed=failure_limit(spec.max_failed_trials, spec.trials),
        heartbeat_age=heartbeat.failing_for,
        note=echo,
        objective=plan.objective,
    )
    bridge.before_tell = publish.attach_artifacts
    if spec.tracker == "mlflow":
        from drltune.search.tracked import SearchTracking
        from drltune.tracking import MlflowTracker

        tracker = MlflowTracker(spec.tracker_uri, study.study_name, warn=echo)
        bridge.tracking = SearchTracking(tracker, study.study_name)
        echo(f"tracking: MLflow {tracker.uri}, experiment {study.study_name!r} (one run per trial)")
    heartbeat.on_lost = (
        bridge.halt
    )  # cut off from the storage: stop the trials before others retry them
    return bridge, heartbeat, publish


def _trial_resources(
    spec: TuneOptions, plan: TunePlan, ray: Any, echo: Callable[[str], None]
) -> tuple[float, float]:
    """Each trial's CPUs and GPUs on the Ray that is up, checked against what it offers; says
    them."""
    _check_checkpoint_reach(ray, spec.checkpoint_every, spec.storage_path)
    gpus = (
        spec.gpus_per_trial if spec.gpus_per_trial is not None else auto_gpus(ray, spec.concurrent)
    )
    cpus, cpus_note = trial_cpus(spec.cpus_per_trial, spec.concurrent, ray, gpus)
    check_fits(
        {"CPU": cpus, "GPU": gpus}, ray.nodes(), cluster=joins_cluster(spec.address), warn=echo
    )
    if gpus and not joins_cluster(spec.address):
        check_gpu_memory(plan.space, plan.base, gpus, spec.concurrent, ray)
    echo(
        f"each trial gets {cpus:g} CPU{cpus_note} and {gpus:g} GPU"
        + (f" (of {ray.cluster_resources().get('GPU', 0):g} GPUs)" if gpus else "")
    )
    return cpus, gpus


def _tuner(
    spec: TuneOptions,
    name: str,
    bridge: OptunaBridge,
    cpus: float,
    gpus: float,
    ray_root: str,
    callbacks: list[Any],
) -> Any:
    """Ray Tune's side of the run: trials asked of the bridge, stopped by it, retried on worker
    deaths."""
    from ray import tune

    from drltune.search.bridge import PruningScheduler, StopSearch, trial_name
    from drltune.search.trainable import run_trial

    trainable = tune.with_resources(run_trial, {"cpu": cpus, "gpu": gpus})
    return tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=bridge,
            scheduler=PruningScheduler(bridge),
            num_samples=-1,
            max_concurrent_trials=spec.concurrent,
            reuse_actors=True,
            trial_name_creator=trial_name,
            trial_dirname_creator=trial_name,
        ),
        run_config=tune.RunConfig(
            name=f"{name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=ray_root,
            verbose=0,
            stop=StopSearch(bridge),
            failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            log_to_file=True,
            callbacks=callbacks,
        ),
    )


def _check_checkpoint_reach(ray: Any, checkpoint_every: int, storage_path: str | None) -> None:
    """On several nodes, a retried trial may land on another node: its checkpoint must be reachable
    there."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and checkpoint_every > 0 and not storage_path:
        raise DrltuneError(
            f"the Ray cluster has {len(nodes)} nodes: trial checkpoints need a folder that every "
            "node reaches (--storage-path /shared/folder or s3://bucket/path), or pass "
            "--checkpoint-every 0"
        )


def trial_cpus(
    cpus_per_trial: float | None, concurrent: int, ray: Any, gpus: float
) -> tuple[float, str]:
    """--cpus-per-trial, or its default for this cluster, and how the default was found (for the
    start line)."""
    if cpus_per_trial is not None:
        return cpus_per_trial, ""
    cpus, how = cpus_split(ray_nodes(ray), gpus, concurrent)
    return float(cpus), f" ({how}; --cpus-per-trial to change)" if how else ""


def check_gpu_memory(
    space: SearchSpace, base: TrialConfig, gpus: float, concurrent: int, ray: Any
) -> None:
    """Refuse, before any trial starts, trials that their GPU share cannot hold (this machine's
    GPUs; on a cluster the driver cannot see the workers' GPUs and each trial's cap alone guards
    them)."""
    gpu_bytes = local_gpu_bytes()
    if gpu_bytes is None or not 0 < gpus < 1:
        return
    resolved = resolve(base)
    data = load_dataset(base.dataset, base.data_root, resolved.dataset_params)
    batch = largest(space, "batch_size", resolved.batch_size)
    estimate = trial_memory(
        data.num_classes,
        data.audio_shape,
        data.visual_shape,
        resolved.fusion,
        batch,
        largest(space, "encoder_width", resolved.encoder_width),
        # a searched optimiser: Adam's two states per weight, the most any has
        "adam" if _searches(space, "optimizer") else resolved.optimizer,
        max(batch, 256),
    )
    check_memory_fits(
        estimate, gpus, gpu_bytes, int(ray.cluster_resources().get("GPU", 0)), concurrent
    )


def _searches(space: SearchSpace, key: str) -> bool:
    return any(d.name == key and d.searched for d in space.top)
