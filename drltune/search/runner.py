"""`drltune search`: one study, Optuna deciding, Ray Tune executing (see bridge.py for the
split). The recipe: check the input, create or resume the study, run the trials (tune_run.py),
report."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna

import drltune
from drltune import record, safe_yaml
from drltune.config import TrialConfig
from drltune.data import DATASETS, load_dataset
from drltune.errors import DrltuneError
from drltune.resolve import ResolvedConfig, resolve
from drltune.search import tune_run
from drltune.search.checkpoints import (
    CheckpointStore,
    pending_keys,
    study_folder_name,
    sweep_checkpoints,
)
from drltune.search.gpu_plan import check_device_for_ray
from drltune.search.objective import Objective, parse_objective
from drltune.search.ray_start import check_reachable, joins_cluster
from drltune.search.resources import check_local_cpus
from drltune.search.space import SearchSpace
from drltune.search.space_file import load_space, parse_space
from drltune.search.storage import database_file, display_url, open_writer, sqlite_path
from drltune.search.storage_url import DEFAULT_URL
from drltune.shipped_spaces import DEFAULT_SPACE


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
    return sum(store.adopt(legacy, key) for key in sorted(pending_keys(study)))


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
    if not joins_cluster(address) and cpus_per_trial is not None:
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
    ray_root: str,
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
    tune_run.run_tune(spec, plan, study, store, ray_root, echo)


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
    ray_root = storage_path(spec)
    study, store = start_study(plan, storage, spec.storage, ray_root, spec.max_retries, echo)
    run_trials(spec, plan, study, store, ray_root, echo)
    if after_trials is not None and counted(study) >= spec.trials:
        after_trials(study)
    report(study, spec.storage, echo)
    return study
