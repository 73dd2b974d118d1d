"""`drltune search`: one study, Optuna deciding, Ray Tune executing (see bridge.py for the split)."""
from __future__ import annotations

import math
import os
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

import drltune
from drltune import record, safe_yaml
from drltune.config import TrialConfig
from drltune.data import DATASETS, load_dataset
from drltune.errors import DrltuneError, RuntimeFailure
from drltune.resolve import resolve
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
from drltune.search.storage import display_url, open_reader, open_writer, resolve_storage_url, sqlite_path
from drltune.shipped_spaces import DEFAULT_SPACE


@dataclass
class SearchSpec:
    """Everything `drltune search` was asked for."""

    dataset: str = "synthetic"
    data_root: str | None = None
    space_file: Path = DEFAULT_SPACE
    trials: int = 20
    study_name: str | None = None
    storage: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    pruner_startup: int | None = None  # None: the pruner's default for the budget (pruning.py)
    pruner_warmup: int | None = None
    max_epochs: int | None = None
    concurrent: int = 2
    cpus_per_trial: float | None = None  # None: 1 without GPUs, else a node's cores / its trials (gpu_plan)
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
    cfg = TrialConfig.from_dict({"dataset": spec.dataset, "data_root": spec.data_root, "seed": spec.seed,
                                 **fixed}, where=f"{spec.space_file}: fixed")
    return cfg.with_overrides(spec.overrides)


def failure_limit(spec: SearchSpec) -> int:
    return spec.max_failed_trials if spec.max_failed_trials is not None else max(10, spec.trials // 10)


def storage_path(spec: SearchSpec) -> str:
    """Where Ray's experiment state and the trials' checkpoints go: --storage-path, else a `ray`
    folder beside the SQLite file (or under ./studies)."""
    if spec.storage_path:
        return spec.storage_path if "://" in spec.storage_path else str(Path(spec.storage_path).expanduser().resolve())
    db = sqlite_path(resolve_storage_url(spec.storage))
    studies = db.resolve().parent if db is not None else Path.cwd().resolve() / "studies"
    return str(studies / "ray")


def checkpoint_store(spec: SearchSpec, study: optuna.Study) -> CheckpointStore:
    """The study's own checkpoint folder, named by its name and id (see checkpoints.py); a study
    from before ids gets its id here."""
    from drltune.search.study import study_uid

    uid = study_uid(study)
    return CheckpointStore(f"{storage_path(spec).rstrip('/')}/checkpoints/{study_folder_name(study.study_name, uid)}",
                           owner=uid)


def adopt_legacy_checkpoints(spec: SearchSpec, study: optuna.Study, store: CheckpointStore) -> int:
    """Move into `store` the checkpoints that this study's running and queued trials resume from,
    out of the folder named by the study's name alone (drltune before study ids). Run once, when a
    study gets its id: that folder may be shared with another study of the same name, so nothing
    else in it is touched."""
    legacy = CheckpointStore(f"{storage_path(spec).rstrip('/')}/checkpoints/{study_folder_name(study.study_name)}")
    return sum(store.adopt(legacy, key) for key in sorted(_pending(study)))


def _pending(study: optuna.Study) -> set[str]:
    """The checkpoint folders that running and queued trials resume from."""
    from optuna.trial import TrialState

    from drltune.search.study import lineage

    return {lineage_key(lineage(t)) for t in study.get_trials(
        deepcopy=False, states=(TrialState.RUNNING, TrialState.WAITING))}


def sweep_checkpoints(study: optuna.Study, store: CheckpointStore) -> int:
    """Delete the checkpoint folders (of this study's own folder) that no running or queued trial will resume from."""
    pending = _pending(study)
    gone = [key for key in store.keys() if key not in pending]
    for key in gone:
        store.delete(key)
    return len(gone)


def study_name(spec: SearchSpec, space: SearchSpace) -> str:
    """--study, else DATASET-SPACE (e.g. synthetic-default)."""
    return spec.study_name or f"{spec.dataset}-{space.path.stem}"


def own_space_on_resume(spec: SearchSpec, space: SearchSpace, max_epochs: int) -> tuple[SearchSpace, str | None]:
    """The space a study resumes on when no --space is given: its own, as stored when it began.

    An upgrade may change the shipped default space (a new method among `method`'s choices), and a
    categorical's choices cannot change within an Optuna study: without this, `drltune search`
    run again after an upgrade would refuse to resume the study it made. (None: no such study, or
    its space is the default's; else the line that says which space it resumes on.)"""
    if Path(spec.space_file) != DEFAULT_SPACE:
        return space, None
    name = study_name(spec, space)
    try:
        storage = open_reader(spec.storage)
        stored = optuna.load_study(study_name=name, storage=storage).user_attrs.get(record.SPACE)
    except (DrltuneError, KeyError):  # no storage or no such study yet: a new study
        return space, None
    if not stored or stored == space.text:
        return space, None
    own = parse_space(safe_yaml.load(stored), max_epochs, path=space.path, text=stored)
    return own, (f"search space: the one study {name!r} began with, stored in it (the default space has "
                 "changed since; pass --space to choose one):")


def check_budget(spec: SearchSpec) -> int:
    """The epoch budget of each trial: --max-epochs, else the dataset's default epochs."""
    if spec.max_epochs is not None:
        return spec.max_epochs
    return resolve(base_config(spec, {})).epochs


class _Stop:
    """Ctrl-C and --timeout end the run cleanly: no new trials, running ones stopped and retired."""

    def __init__(self, timeout: float | None) -> None:
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interrupted = threading.Event()
        self.fired: str | None = None  # the reason the search loop saw (a deadline passed later stopped nothing)

    def reason(self) -> str | None:
        if self.interrupted.is_set():
            self.fired = "stopped by Ctrl-C"
        elif self.fired is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.fired = "stopped by --timeout"
        return self.fired

    def outcome(self) -> str | None:
        """After the run: what stopped it, if anything (Ctrl-C during the shutdown counts too)."""
        return "stopped by Ctrl-C" if self.interrupted.is_set() else self.fired


def run_search(spec: SearchSpec, echo: Callable[[str], None] = print,
               after_trials: Callable[[optuna.Study], None] | None = None) -> optuna.Study:
    """Create or resume the study, run the remaining trials on Ray Tune, print the best configs.
    `after_trials` runs once the study has its --trials (e.g. the race), before the summary."""
    from drltune.search.dashboard_view import describe_study
    from drltune.search.liveness import retire_stale
    from drltune.search.progress import next_steps, summary_lines
    from drltune.search.pruning import make_pruner
    from drltune.search.samplers import check_sampler, search_sampler
    from drltune.search.study import counted, create_or_resume, has_uid, requeue_lost

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    objective = parse_objective(spec.objective)
    max_epochs = check_budget(spec)
    space = load_space(spec.space_file, max_epochs)
    space, own_space_note = own_space_on_resume(spec, space, max_epochs)
    base = base_config(spec, space.fixed).replace(epochs=max_epochs)
    resolved = resolve(base)  # dataset, fixed values and --set are checked before anything is stored
    check_device_for_ray(resolved.device)
    if spec.address and spec.address.startswith("ray://"):
        raise DrltuneError(
            f"--address {spec.address}: Ray Client is not supported (the search driver keeps the study and "
            "must run on the cluster); run it on the head node with --address auto, or submit it: "
            "ray job submit --address http://HEAD:8265 -- drltune search ...")
    if not _joins_cluster(spec):
        if spec.cpus_per_trial is not None:
            check_local_cpus(spec.cpus_per_trial)  # before the study exists and Ray starts
    if spec.address:
        check_reachable(spec.address)
    elif DATASETS.get(base.dataset).needs_data_root:
        # A missing or malformed data folder fails here, before the study exists, and the cache is
        # built once now instead of inside the first trial while the others wait on its lock.
        load_dataset(base.dataset, base.data_root, resolved.dataset_params)
    fixed_notes = space.fixed_by(spec.overrides, base)
    space.check_values(base)

    pruner, pruner_args = make_pruner(spec.pruner, max_epochs, spec.trials, spec.pruner_startup, spec.pruner_warmup)
    check_sampler(spec.sampler, space)
    url = resolve_storage_url(spec.storage)
    storage = open_writer(url, heartbeat=True)
    name = study_name(spec, space)
    # Each trial samples with its own seed (seed, trial number): drivers that share the study
    # propose different configurations, and one driver alone is reproducible.
    sampler, sampler_args = search_sampler(spec.sampler, spec.seed, spec.trials, space)
    attrs = {record.DATASET: spec.dataset, record.SPACE: space.text, record.SPACE_FILE: str(space.path.resolve()),
             record.VERSION: drltune.__version__, record.COMMAND: spec.command, record.MAX_EPOCHS: max_epochs,
             record.PRUNER: spec.pruner, record.SAMPLER: spec.sampler, record.PRUNER_ARGS: pruner_args,
             record.SAMPLER_ARGS: sampler_args}
    study, existed = create_or_resume(name, storage, sampler, pruner, attrs, objective)
    describe_study(study)  # metric name and study Note for optuna-dashboard

    path = sqlite_path(url)
    echo(f"study {name!r} in {display_url(url)}" + (f"  ({path.resolve()})" if path else ""))
    echo(f"search space {space.path}:" if own_space_note is None else own_space_note)
    for line in space.describe():
        echo(f"  {line}")
    for note in fixed_notes:
        echo(note)
    for note in space.notes:
        echo(f"epoch budget: {note}")
    migrating = existed and not has_uid(study)  # a study from before study ids
    store = checkpoint_store(spec, study)
    if existed:
        stale = retire_stale(study, spec.max_retries) + requeue_lost(study)
        echo(f"resuming: {counted(study)} finished trials kept"
             + (f", {stale} interrupted trials closed as FAIL and queued again" if stale else ""))
        adopted = adopt_legacy_checkpoints(spec, study, store) if migrating else 0
        if adopted:
            echo(f"checkpoints: {adopted} interrupted trials resume from their checkpoints, moved to {store.root}")
        sweep_checkpoints(study, store)
    remaining = spec.trials - counted(study)
    if spec.seed_with and remaining > 0:
        from drltune.search.seed_trials import enqueue_published

        enqueue_published(study, space, spec.seed_with, max_epochs, remaining, echo)
    if remaining <= 0:
        echo(f"the study already has {counted(study)} finished trials (--trials {spec.trials}); nothing to run")
    else:
        pruned = ("unpruned (Optuna prunes on one value; pruning on the first alone would cut the front's "
                  "low-gap trials)" if objective.multi else f"pruner {spec.pruner} (re-init aware)")
        echo(f"running {remaining} trials x {max_epochs} epochs, {spec.concurrent} at a time, objective "
             f"{objective.describe()}, sampler {spec.sampler}, {pruned}")
        _run_tune(spec, study, space, base, store, echo, objective)
    if after_trials is not None and counted(study) >= spec.trials:
        after_trials(study)
    for line in summary_lines(study):
        echo(line)
    for line in next_steps(name, display_url(url)):
        echo(line)
    return study


def _run_tune(spec: SearchSpec, study: optuna.Study, space: SearchSpace, base: TrialConfig,
              store: CheckpointStore, echo: Callable[[str], None], objective: Objective) -> None:
    quiet_ray_env()
    import ray
    from ray import tune

    from drltune.search.bridge import OptunaBridge, PruningScheduler, StopSearch, trial_name
    from drltune.search.dashboard_view import DashboardPublisher
    from drltune.search.display import SearchBar, TimeLeft
    from drltune.search.liveness import Heartbeat, SharedBudget
    from drltune.search.progress import Outcome, Progress
    from drltune.search.study import counted
    from drltune.search.ticker import EpochTicker
    from drltune.search.trainable import run_trial
    from drltune.search.tune_sync import tolerate_state_sync

    stop = _Stop(spec.timeout)
    assert base.epochs is not None  # run_search sets it to the budget's max epochs
    time_left = TimeLeft(spec.trials, counted(study), base.epochs)
    bar = SearchBar(study.study_name, spec.trials, counted(study), time_left) if spec.bar else None
    plain_echo, echo = echo, (bar.write if bar is not None else echo)  # lines go above the bar
    progress = Progress(study, spec.trials, echo, running=lambda: len(bridge.live), bar=bar, time_left=time_left)
    publish = DashboardPublisher(study, resolve_storage_url(spec.storage), warn=echo)
    heartbeat = Heartbeat(study, lambda: [trial_id_of(t.trial) for t in list(bridge.live.values())])

    def on_outcome(outcome: Outcome) -> None:
        progress(outcome)
        publish(outcome.number)

    bridge = OptunaBridge(study, space, base, SharedBudget(study, spec.trials, spec.max_retries),
                          on_outcome=on_outcome,
                          stop_reason=stop.reason, checkpoints=store, checkpoint_every=spec.checkpoint_every,
                          max_failed=failure_limit(spec), heartbeat_age=heartbeat.failing_for, note=echo,
                          objective=objective)

    bridge.before_tell = publish.attach_artifacts
    if spec.tracker == "mlflow":
        from drltune.search.tracked import SearchTracking
        from drltune.tracking import MlflowTracker

        tracker = MlflowTracker(spec.tracker_uri, study.study_name, warn=echo)
        bridge.tracking = SearchTracking(tracker, study.study_name)
        echo(f"tracking: MLflow {tracker.uri}, experiment {study.study_name!r} (one run per trial)")
    heartbeat.on_lost = bridge.halt  # cut off from the storage: stop the trials before others retry them
    started_ray = not ray.is_initialized()
    try:
        if started_ray:
            init_ray(ray, spec.address, spec.concurrent, spec.cpus_per_trial or 1)
        _check_checkpoint_reach(spec, ray)
        gpus = spec.gpus_per_trial if spec.gpus_per_trial is not None else auto_gpus(ray, spec.concurrent)
        cpus, cpus_note = trial_cpus(spec, ray, gpus)
        check_fits({"CPU": cpus, "GPU": gpus}, ray.nodes(), cluster=_joins_cluster(spec), warn=echo)
        if gpus and not _joins_cluster(spec):
            check_gpu_memory(spec, space, base, gpus, ray)
    except DrltuneError:
        if started_ray and ray.is_initialized():
            ray.shutdown()
        if bar is not None:
            bar.close()
        raise
    bridge.threads = max(1, math.floor(cpus))  # each trial's torch and k-means threads
    echo(f"each trial gets {cpus:g} CPU{cpus_note} and {gpus:g} GPU"
         + (f" (of {ray.cluster_resources().get('GPU', 0):g} GPUs)" if gpus else ""))
    trainable = tune.with_resources(run_trial, {"cpu": cpus, "gpu": gpus})
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(search_alg=bridge, scheduler=PruningScheduler(bridge), num_samples=-1,
                                    max_concurrent_trials=spec.concurrent, reuse_actors=True,
                                    trial_name_creator=trial_name, trial_dirname_creator=trial_name),
        run_config=tune.RunConfig(
            name=f"{study.study_name}-{time.strftime('%Y%m%d-%H%M%S')}", storage_path=storage_path(spec),
            verbose=0, stop=StopSearch(bridge), failure_config=tune.FailureConfig(max_failures=spec.max_failures),
            log_to_file=True, callbacks=[EpochTicker(echo, time_left=time_left, bar=bar)]),
    )
    previous_handler = signal.getsignal(signal.SIGINT)

    def on_sigint(signum: int, frame: Any) -> None:
        echo("stopping: running trials will be closed and retried next time (Ctrl-C again to abort)")
        stop.interrupted.set()
        signal.signal(signal.SIGINT, previous_handler)

    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, on_sigint)
    try:
        with warnings.catch_warnings(), heartbeat, tolerate_state_sync(echo):
            warnings.simplefilter("ignore")
            tuner.fit()
    finally:
        if in_main:
            signal.signal(signal.SIGINT, previous_handler)
        closed = bridge.close_open(stop.outcome() or bridge.fatal or
                                   "interrupted: the search ended before this trial finished")
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


def _check_checkpoint_reach(spec: SearchSpec, ray: Any) -> None:
    """On several nodes, a retried trial may land on another node: its checkpoint must be reachable there."""
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    if len(nodes) > 1 and spec.checkpoint_every > 0 and not spec.storage_path:
        raise DrltuneError(
            f"the Ray cluster has {len(nodes)} nodes: trial checkpoints need a folder that every node reaches "
            "(--storage-path /shared/folder or s3://bucket/path), or pass --checkpoint-every 0")


def trial_cpus(spec: SearchSpec, ray: Any, gpus: float) -> tuple[float, str]:
    """--cpus-per-trial, or its default for this cluster, and how the default was found (for the start line)."""
    if spec.cpus_per_trial is not None:
        return spec.cpus_per_trial, ""
    cpus, how = cpus_split(ray_nodes(ray), gpus, spec.concurrent)
    return float(cpus), f" ({how}; --cpus-per-trial to change)" if how else ""


def check_gpu_memory(spec: SearchSpec, space: SearchSpace, base: TrialConfig, gpus: float, ray: Any) -> None:
    """Refuse, before any trial starts, trials that their GPU share cannot hold (this machine's GPUs;
    on a cluster the driver cannot see the workers' GPUs and each trial's cap alone guards them)."""
    gpu_bytes = local_gpu_bytes()
    if gpu_bytes is None or not 0 < gpus < 1:
        return
    resolved = resolve(base)
    data = load_dataset(base.dataset, base.data_root, resolved.dataset_params)
    batch = largest(space, "batch_size", resolved.batch_size)
    estimate = trial_memory(data.num_classes, data.audio_shape, data.visual_shape, resolved.fusion,
                            batch, largest(space, "encoder_width", resolved.encoder_width),
                            # a searched optimiser: Adam's two states per weight, the most any has
                            "adam" if _searches(space, "optimizer") else resolved.optimizer,
                            max(batch, 256))
    check_memory_fits(estimate, gpus, gpu_bytes, int(ray.cluster_resources().get("GPU", 0)), spec.concurrent)


def _searches(space: SearchSpace, key: str) -> bool:
    return any(d.name == key and d.searched for d in space.top)


def _joins_cluster(spec: SearchSpec) -> bool:
    """--address, or RAY_ADDRESS (set by `ray job submit`): a cluster, not a local Ray."""
    return bool(spec.address or os.environ.get("RAY_ADDRESS"))
