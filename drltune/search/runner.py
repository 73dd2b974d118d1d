"""`drltune search`: one study, Optuna deciding, Ray Tune executing (see bridge.py for the
split)."""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import optuna

import drltune
from drltune import record, safe_yaml
from drltune.config import TrialConfig
from drltune.data import DATASETS, load_dataset
from drltune.errors import DrltuneError, RuntimeFailure
from drltune.resolve import ResolvedConfig, resolve
from drltune.search.checkpoints import CheckpointStore, lineage_key, study_folder_name
from drltune.search.gpu_plan import (
    check_device_for_ray,
    check_memory_fits,
    cpus_split,
    largest,
    local_gpu_bytes,
    ray_nodes,
    trial_memory,
)
from drltune.search.objective import Objective, parse_objective
from drltune.search.optuna_private import trial_id_of
from drltune.search.ray_start import auto_gpus, check_reachable, init_ray, quiet_ray_env
from drltune.search.resources import check_fits, check_local_cpus
from drltune.search.space import SearchSpace
from drltune.search.space_file import load_space, parse_space
from drltune.search.storage import database_file, display_url, open_writer, sqlite_path
from drltune.search.storage_url import DEFAULT_URL
from drltune.shipped_spaces import DEFAULT_SPACE

if TYPE_CHECKING:
    from drltune.search.bridge import OptunaBridge
    from drltune.search.dashboard_view import DashboardPublisher
    from drltune.search.display import SearchBar, TimeLeft
    from drltune.search.liveness import Heartbeat


@dataclass
class SearchSpec:
    """Everything `drltune search` was asked for."""

    dataset: str = "synthetic"
    data_root: str | None = None
    space_file: Path = DEFAULT_SPACE
    trials: int = 20
    study_name: str | None = None
    storage: str = DEFAULT_URL  # resolved by the command (storage_url.py), never again here
    sampler: str = "tpe"
    pruner: str = "median"
    pruner_startup: int | None = None  # None: the pruner's default for the budget (pruning.py)
    pruner_warmup: int | None = None
    max_epochs: int | None = None
    concurrent: int = 2
    cpus_per_trial: float | None = (
        None  # None: 1 without GPUs, else a node's cores / its trials (gpu_plan)
    )
    gpus_per_trial: float | None = None  # None: share the GPUs Ray sees among --concurrent trials
    address: str | None = None
    seed: int = 0
    timeout: float | None = None
    max_failures: int = 1
    max_retries: int = 2
    max_failed_trials: int | None = None  # None: max(10, trials // 10)
    checkpoint_every: int = 1
    storage_path: str | None = None
    overrides: list[str] = field(default_factory=list)
    command: str = ""
    seed_with: str | None = None  # papers | balancebenchmark: published configs as the first trials
    objective: str = "val_acc"  # --objective (objective.py)
    bar: bool = False  # a progress bar (stdout is a terminal) instead of the plain progress lines
    tracker: str = "none"  # drltune.tracking.TRACKERS
    tracker_uri: str | None = None


def base_config(spec: SearchSpec, fixed: dict[str, Any]) -> TrialConfig:
    """Dataset, the space's fixed keys, then --set; epochs and seed are set by the search."""
    cfg = TrialConfig.from_dict(
        {"dataset": spec.dataset, "data_root": spec.data_root, "seed": spec.seed, **fixed},
        where=f"{spec.space_file}: fixed",
    )
    return cfg.with_overrides(spec.overrides)


def failure_limit(max_failed_trials: int | None, trials: int) -> int:
    return max_failed_trials if max_failed_trials is not None else max(10, trials // 10)


def storage_path(spec: SearchSpec) -> str:
    """Where Ray's experiment state and the trials' checkpoints go: --storage-path, else a `ray`
    folder beside the SQLite file (or under ./studies)."""
    if spec.storage_path:
        return (
            spec.storage_path
            if "://" in spec.storage_path
            else str(Path(spec.storage_path).expanduser().resolve())
        )
    db = sqlite_path(spec.storage)
    studies = db.resolve().parent if db is not None else Path.cwd().resolve() / "studies"
    return str(studies / "ray")


def checkpoint_store(ray_root: str, study: optuna.Study) -> CheckpointStore:
    """The study's own checkpoint folder under `ray_root` (`storage_path`), named by its name and id
    (see checkpoints.py); a study from before ids gets its id here."""
    from drltune.search.study import study_uid

    uid = study_uid(study)
    return CheckpointStore(
        f"{ray_root.rstrip('/')}/checkpoints/{study_folder_name(study.study_name, uid)}", owner=uid
    )


def adopt_legacy_checkpoints(ray_root: str, study: optuna.Study, store: CheckpointStore) -> int:
    """Move into `store` the checkpoints that this study's running and queued trials resume from,
    out of the folder named by the study's name alone (drltune before study ids). Run once, when a
    study gets its id: that folder may be shared with another study of the same name, so nothing
    else in it is touched."""
    legacy = CheckpointStore(
        f"{ray_root.rstrip('/')}/checkpoints/{study_folder_name(study.study_name)}"
    )
    return sum(store.adopt(legacy, key) for key in sorted(_pending(study)))


def _pending(study: optuna.Study) -> set[str]:
    """The checkpoint folders that running and queued trials resume from."""
    from optuna.trial import TrialState

    from drltune.search.study import lineage

    return {
        lineage_key(lineage(t))
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))
    }


def sweep_checkpoints(study: optuna.Study, store: CheckpointStore) -> int:
    """Delete the checkpoint folders (of this study's own folder) that no running or queued trial
    will resume from."""
    pending = _pending(study)
    gone = [key for key in store.keys() if key not in pending]
    for key in gone:
        store.delete(key)
    return len(gone)


def study_name(spec: SearchSpec) -> str:
    """--study, else DATASET-SPACE (e.g. synthetic-default)."""
    return spec.study_name or f"{spec.dataset}-{Path(spec.space_file).stem}"


def check_budget(spec: SearchSpec) -> int:
    """The epoch budget of each trial: --max-epochs, else the dataset's default epochs."""
    if spec.max_epochs is not None:
        return spec.max_epochs
    return resolve(base_config(spec, {})).epochs


@dataclass
class SearchPlan:
    """What a search runs, worked out from its spec alone (`prepare`): no storage, no Ray."""

    name: str  # the study's
    objective: Objective
    space: SearchSpace
    space_line: str  # the start line that names the space
    base: TrialConfig  # dataset, the space's fixed keys and --set; epochs: the budget
    resolved: ResolvedConfig  # `base`, resolved
    max_epochs: int  # each trial's budget (`base.epochs`)
    fixed_notes: list[str]  # what --set fixed that the space searches
    pruner: optuna.pruners.BasePruner
    sampler: optuna.samplers.BaseSampler
    attrs: dict[str, Any]  # stored on a new study, checked against a resumed one


def prepare(spec: SearchSpec, stored_space: str | None = None) -> SearchPlan:
    """Check the input and decide everything a search can before it opens a storage or starts Ray,
    so that a mistake stores nothing. `stored_space`: the space text the study began with (see
    `stored_space`), which it resumes on when it differs from today's default."""
    from drltune.search.pruning import make_pruner
    from drltune.search.samplers import check_sampler, search_sampler

    objective = parse_objective(spec.objective)
    max_epochs = check_budget(spec)
    space = load_space(spec.space_file, max_epochs)
    space_line = f"search space {space.path}:"
    if stored_space and stored_space != space.text:
        space = parse_space(
            safe_yaml.load(stored_space), max_epochs, path=space.path, text=stored_space
        )
        space_line = (
            f"search space: the one study {study_name(spec)!r} began with, stored in it (the "
            "default space has changed since; pass --space to choose one):"
        )
    base = base_config(spec, space.fixed).replace(epochs=max_epochs)
    resolved = resolve(
        base
    )  # dataset, fixed values and --set are checked before anything is stored
    fixed_notes = space.fixed_by(spec.overrides, base)
    space.check_values(base)
    pruner, pruner_args = make_pruner(
        spec.pruner, max_epochs, spec.trials, spec.pruner_startup, spec.pruner_warmup
    )
    check_sampler(spec.sampler, space)
    # Each trial samples with its own seed (seed, trial number): drivers that share the study
    # propose different configurations, and one driver alone is reproducible.
    sampler, sampler_args = search_sampler(spec.sampler, spec.seed, spec.trials, space)
    attrs = {
        record.DATASET: spec.dataset,
        record.SPACE: space.text,
        record.SPACE_FILE: str(space.path.resolve()),
        record.VERSION: drltune.__version__,
        record.COMMAND: spec.command,
        record.MAX_EPOCHS: max_epochs,
        record.PRUNER: spec.pruner,
        record.SAMPLER: spec.sampler,
        record.PRUNER_ARGS: pruner_args,
        record.SAMPLER_ARGS: sampler_args,
    }
    return SearchPlan(
        study_name(spec),
        objective,
        space,
        space_line,
        base,
        resolved,
        max_epochs,
        fixed_notes,
        pruner,
        sampler,
        attrs,
    )


def open_if_resumable(url: str, space_file: Path) -> optuna.storages.BaseStorage | None:
    """The search's storage, opened before its input is checked only where it may hold the space a
    study began with (`stored_space`): without --space, on a server or a database file that exists.
    Elsewhere it opens once the input is checked, so that a mistake creates nothing; either way
    once."""
    db = database_file(url)
    if Path(space_file) != DEFAULT_SPACE or (db is not None and not db.is_file()):
        return None
    return open_writer(url, heartbeat=True)


def stored_space(storage: optuna.storages.BaseStorage, name: str) -> str | None:
    """The space study `name` began with, as stored in it (None: no such study yet).

    An upgrade may change the shipped default space (a new method among `method`'s choices), and a
    categorical's choices cannot change within an Optuna study: a study run without --space resumes
    on its own space, or `drltune search` run again after an upgrade would refuse to resume it."""
    try:
        return optuna.load_study(study_name=name, storage=storage).user_attrs.get(record.SPACE)
    except KeyError:
        return None


def check_before_start(plan: SearchPlan, address: str | None, cpus_per_trial: float | None) -> None:
    """What this machine or cluster must offer, checked before the study exists: a device Ray can
    give the trials, a cluster that is reachable (and not through Ray Client), the CPUs asked for,
    and the dataset's folder."""
    check_device_for_ray(plan.resolved.device)
    if address and address.startswith("ray://"):
        raise DrltuneError(
            f"--address {address}: Ray Client is not supported (the search driver keeps the study "
            "and must run on the cluster); run it on the head node with --address auto, or submit "
            "it: ray job submit --address http://HEAD:8265 -- drltune search ..."
        )
    if not _joins_cluster(address) and cpus_per_trial is not None:
        check_local_cpus(cpus_per_trial)  # before the study exists and Ray starts
    if address:
        check_reachable(address)
    elif DATASETS.get(plan.base.dataset).needs_data_root:
        # A missing or malformed data folder fails here, before the study exists, and the cache is
        # built once now instead of inside the first trial while the others wait on its lock.
        load_dataset(plan.base.dataset, plan.base.data_root, plan.resolved.dataset_params)


def start_study(
    plan: SearchPlan,
    storage: optuna.storages.BaseStorage,
    url: str,
    ray_root: str,
    max_retries: int,
    echo: Callable[[str], None],
) -> tuple[optuna.Study, CheckpointStore]:
    """Create the study, or resume it: interrupted trials closed and queued again, their checkpoints
    kept and the others' swept. Says where it lives and what it searches."""
    from drltune.search.dashboard_view import describe_study
    from drltune.search.liveness import retire_stale
    from drltune.search.study import counted, create_or_resume, has_uid, requeue_lost

    study, existed = create_or_resume(
        plan.name, storage, plan.sampler, plan.pruner, plan.attrs, plan.objective
    )
    describe_study(study)  # metric name and study Note for optuna-dashboard
    path = sqlite_path(url)
    echo(f"study {plan.name!r} in {display_url(url)}" + (f"  ({path.resolve()})" if path else ""))
    echo(plan.space_line)
    for line in plan.space.describe():
        echo(f"  {line}")
    for note in plan.fixed_notes:
        echo(note)
    for note in plan.space.notes:
        echo(f"epoch budget: {note}")
    migrating = existed and not has_uid(study)  # a study from before study ids
    store = checkpoint_store(ray_root, study)
    if existed:
        stale = retire_stale(study, max_retries) + requeue_lost(study)
        echo(
            f"resuming: {counted(study)} finished trials kept"
            + (f", {stale} interrupted trials closed as FAIL and queued again" if stale else "")
        )
        adopted = adopt_legacy_checkpoints(ray_root, study, store) if migrating else 0
        if adopted:
            echo(
                f"checkpoints: {adopted} interrupted trials resume from their checkpoints, moved "
                f"to {store.root}"
            )
        sweep_checkpoints(study, store)
    return study, store


def run_trials(
    spec: SearchSpec,
    plan: SearchPlan,
    study: optuna.Study,
    store: CheckpointStore,
    echo: Callable[[str], None],
) -> None:
    """Run the trials the study still lacks (--seed-with's published configs first) on Ray Tune."""
    from drltune.search.study import counted

    remaining = spec.trials - counted(study)
    if spec.seed_with and remaining > 0:
        from drltune.search.seed_trials import enqueue_published

        enqueue_published(study, plan.space, spec.seed_with, plan.max_epochs, remaining, echo)
    if remaining <= 0:
        echo(
            f"the study already has {counted(study)} finished trials (--trials {spec.trials}); "
            "nothing to run"
        )
        return
    pruned = (
        "unpruned (Optuna prunes on one value; pruning on the first alone would cut the front's "
        "low-gap trials)"
        if plan.objective.multi
        else f"pruner {spec.pruner} (re-init aware)"
    )
    echo(
        f"running {remaining} trials x {plan.max_epochs} epochs, {spec.concurrent} at a time, "
        f"objective {plan.objective.describe()}, sampler {spec.sampler}, {pruned}"
    )
    _run_tune(spec, plan, study, store, echo)


def report(study: optuna.Study, url: str, echo: Callable[[str], None]) -> None:
    """The best configs, then the commands that explore, export and verify them."""
    from drltune.search.progress import next_steps, summary_lines

    for line in summary_lines(study):
        echo(line)
    for line in next_steps(study.study_name, display_url(url)):
        echo(line)


def run_search(
    spec: SearchSpec,
    echo: Callable[[str], None] = print,
    after_trials: Callable[[optuna.Study], None] | None = None,
    storage: optuna.storages.BaseStorage | None = None,
) -> optuna.Study:
    """Create or resume the study, run the remaining trials on Ray Tune, print the best configs.
    `after_trials` runs once the study has its --trials (e.g. the race), before the summary.
    `storage`: `spec.storage` as the caller opened it already (compare's later searches)."""
    from drltune.search.study import counted

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage is None:
        storage = open_if_resumable(spec.storage, spec.space_file)
    own_space = None
    if (
        storage is not None and Path(spec.space_file) == DEFAULT_SPACE
    ):  # only a default space changes
        own_space = stored_space(storage, study_name(spec))
    plan = prepare(spec, own_space)
    check_before_start(plan, spec.address, spec.cpus_per_trial)
    if storage is None:
        storage = open_writer(spec.storage, heartbeat=True)
    study, store = start_study(
        plan, storage, spec.storage, storage_path(spec), spec.max_retries, echo
    )
    run_trials(spec, plan, study, store, echo)
    if after_trials is not None and counted(study) >= spec.trials:
        after_trials(study)
    report(study, spec.storage, echo)
    return study


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


def _run_tune(
    spec: SearchSpec,
    plan: SearchPlan,
    study: optuna.Study,
    store: CheckpointStore,
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
    spec: SearchSpec,
    plan: SearchPlan,
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
    spec: SearchSpec, plan: SearchPlan, ray: Any, echo: Callable[[str], None]
) -> tuple[float, float]:
    """Each trial's CPUs and GPUs on the Ray that is up, checked against what it offers; says
    them."""
    _check_checkpoint_reach(ray, spec.checkpoint_every, spec.storage_path)
    gpus = (
        spec.gpus_per_trial if spec.gpus_per_trial is not None else auto_gpus(ray, spec.concurrent)
    )
    cpus, cpus_note = trial_cpus(spec.cpus_per_trial, spec.concurrent, ray, gpus)
    check_fits(
        {"CPU": cpus, "GPU": gpus}, ray.nodes(), cluster=_joins_cluster(spec.address), warn=echo
    )
    if gpus and not _joins_cluster(spec.address):
        check_gpu_memory(plan.space, plan.base, gpus, spec.concurrent, ray)
    echo(
        f"each trial gets {cpus:g} CPU{cpus_note} and {gpus:g} GPU"
        + (f" (of {ray.cluster_resources().get('GPU', 0):g} GPUs)" if gpus else "")
    )
    return cpus, gpus


def _tuner(
    spec: SearchSpec,
    name: str,
    bridge: OptunaBridge,
    cpus: float,
    gpus: float,
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
            storage_path=storage_path(spec),
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


def _joins_cluster(address: str | None) -> bool:
    """--address, or RAY_ADDRESS (set by `ray job submit`): a cluster, not a local Ray."""
    return bool(address or os.environ.get("RAY_ADDRESS"))
