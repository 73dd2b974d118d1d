"""`drltune search` (Ray Tune runs trials, Optuna samples and prunes) and `drltune dashboard`."""

from __future__ import annotations

import ipaddress
import math
import shlex
import sys
from pathlib import Path
from typing import Sequence

import click

from drltune.commands.storage_option import storage_option
from drltune.search.options import PRUNERS, SAMPLERS
from drltune.tracking import DEFAULT_MLFLOW_URI, TRACKERS, check_tracker


def finite(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """click's FloatRange lets nan and inf through."""
    if value is not None and not math.isfinite(value):
        raise click.BadParameter(f"{value} is not a finite number", ctx=ctx, param=param)
    return value


@click.command("search")
@click.option(
    "--dataset",
    default="synthetic",
    show_default=True,
    help="Registered dataset (see `drltune datasets`).",
)
@click.option(
    "--data-root", type=click.Path(file_okay=False), help="Prepared dataset folder (real datasets)."
)
@click.option(
    "--space",
    "space_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Search space YAML [default: search_spaces/default.yaml, shipped with drltune].",
)
@click.option(
    "--trials",
    type=click.IntRange(1, 1_000_000),
    default=20,
    show_default=True,
    help="Finished trials the study should reach (earlier runs count).",
)
@click.option("--study", "study_name", help="Study name [default: DATASET-SPACE_NAME].")
@storage_option
@click.option(
    "--objective",
    default="val_acc",
    show_default=True,
    metavar="METRIC[,METRIC]",
    help="What the search optimises, at each trial's selected epoch: val_acc or val_f1 "
    "(maximised), or two for a Pareto front, e.g. val_acc,modality_gap (the audio/visual accuracy "
    "gap, minimised; runs unpruned). A study keeps the objective it began with.",
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    default="tpe",
    show_default=True,
    help="Optuna sampler: tpe (multivariate, grouped by method), random, or gp (flat spaces only).",
)
@click.option(
    "--pruner",
    type=click.Choice(PRUNERS),
    default="median",
    show_default=True,
    help="Optuna pruner, wrapped to be re-init aware.",
)
@click.option(
    "--pruner-startup",
    type=click.IntRange(1, 100_000),
    help="median: other trials that must have reached an epoch (finished, pruned or running) "
    "before a trial is judged there [default: 2-3, from --trials].",
)
@click.option(
    "--pruner-warmup",
    type=click.IntRange(1, 100_000),
    help="Epochs every trial trains before it can be pruned (sha/hyperband: the first rung) "
    "[default: max-epochs/15, at least 1].",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(1, 100_000),
    help="Each trial's full epoch budget [default: the dataset's].",
)
@click.option(
    "--concurrent",
    type=click.IntRange(1, 10_000),
    default=2,
    show_default=True,
    help="Trials at a time.",
)
@click.option(
    "--cpus-per-trial",
    type=click.FloatRange(0.0, min_open=True),
    callback=finite,
    help="CPUs (and torch/k-means threads) per trial [default: 1 without GPUs; with GPUs a node's "
    "cores / the trials it runs at once].",
)
@click.option(
    "--gpus-per-trial",
    type=click.FloatRange(0.0),
    callback=finite,
    help="Fractions let several small trials share one GPU [default: the GPUs Ray sees / "
    "--concurrent, at most 1; 0 without GPUs].",
)
@click.option(
    "--address", help="Join this Ray cluster (e.g. auto, 10.0.0.5:6379, ray://head:10001)."
)
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 1),
    default=0,
    show_default=True,
    help="Seed of every trial's training and of the sampler.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.0, min_open=True),
    help="Stop after this many seconds.",
    callback=finite,
)
@click.option(
    "--max-failures",
    type=click.IntRange(0, 100),
    default=1,
    show_default=True,
    help="Retry a trial whose worker process died this many times, from its last epoch checkpoint.",
)
@click.option(
    "--max-retries",
    type=click.IntRange(0, 100),
    default=2,
    show_default=True,
    help="Retry a trial whose driver died this many times (a later run, from its checkpoint).",
)
@click.option(
    "--max-failed-trials",
    type=click.IntRange(1, 1_000_000),
    help="Stop after this many failed trials (sooner when one error repeats) [default: max(10, "
    "trials/10)]. Failed trials do not count toward --trials.",
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(0, 100_000),
    default=1,
    show_default=True,
    help="Save each running trial every N epochs (0: never; a retry then starts over). "
    "A trial's checkpoint is deleted when it ends.",
)
@click.option(
    "--storage-path",
    help="Folder or URI (s3://...) for Ray's state and trial checkpoints; on a "
    "multi-node cluster one that every node reaches [default: studies/ray].",
)
@click.option(
    "--race",
    type=click.IntRange(0, 1000),
    default=0,
    show_default=True,
    help="Once the trials are done, re-train the K best on --race-seeds fresh seeds and rank them "
    "by their mean val_acc (export then writes the raced winner first); 0: rank by one seed.",
)
@click.option(
    "--race-seeds",
    type=click.IntRange(1, 30),
    default=2,
    show_default=True,
    help="Fresh seeds per raced trial (never a seed the search trained with).",
)
@click.option(
    "--seed-with",
    type=click.Choice(["papers", "balancebenchmark"]),
    help="Start with each method's published CREMA-D config (search_spaces/published.yaml) as "
    "enqueued trials, once per study: its paper's, or BalanceBenchmark's shared protocol.",
)
@click.option(
    "--tracker",
    type=click.Choice(TRACKERS),
    default="none",
    show_default=True,
    help="Experiment tracker: mlflow logs one run per trial (needs pip install 'drltune[mlflow]').",
)
@click.option(
    "--tracker-uri",
    metavar="URI",
    help=f"MLflow tracking URI [default: $MLFLOW_TRACKING_URI, else {DEFAULT_MLFLOW_URI}].",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Fix a TrialConfig key for every trial, e.g. dataset_params.n_train=120 "
    "(a key the space searches is then not searched).",
)
def search_cmd(
    dataset,
    data_root,
    space_file,
    trials,
    study_name,
    storage,
    objective,
    sampler,
    pruner,
    pruner_startup,
    pruner_warmup,
    max_epochs,
    concurrent,
    cpus_per_trial,
    gpus_per_trial,
    address,
    seed,
    timeout,
    max_failures,
    max_retries,
    max_failed_trials,
    checkpoint_every,
    storage_path,
    race,
    race_seeds,
    seed_with,
    tracker,
    tracker_uri,
    overrides,
) -> None:
    """Search hyperparameters: Optuna samples and prunes, Ray Tune runs the trials; resumable."""
    from drltune.errors import DrltuneError

    if race and objective != "val_acc":
        raise DrltuneError(
            f"--race ranks trials by their mean val_acc, not by --objective {objective}: "
            "pass --race 0 (and re-train chosen trials on fresh seeds with `drltune verify`)"
        )
    check_tracker(tracker)
    check_early(dataset, space_file)
    from drltune.search.runner import DEFAULT_SPACE, SearchSpec, run_search

    spec = SearchSpec(
        dataset=dataset,
        data_root=data_root,
        space_file=space_file or DEFAULT_SPACE,
        trials=trials,
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        pruner_startup=pruner_startup,
        pruner_warmup=pruner_warmup,
        max_epochs=max_epochs,
        concurrent=concurrent,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        address=address,
        seed=seed,
        timeout=timeout,
        max_failures=max_failures,
        max_retries=max_retries,
        max_failed_trials=max_failed_trials,
        checkpoint_every=checkpoint_every,
        storage_path=storage_path,
        overrides=list(overrides),
        seed_with=seed_with,
        objective=objective,
        bar=sys.stdout.isatty(),
        tracker=tracker,
        tracker_uri=tracker_uri,
        command=shlex.join(["drltune", *sys.argv[1:]]),
    )

    def race_top(study) -> None:
        from drltune.search.racing import run_race

        run_race(
            study, race, race_seeds, concurrent, cpus_per_trial, gpus_per_trial, address, click.echo
        )

    run_search(spec, echo=click.echo, after_trials=race_top if race else None)


def check_early(dataset: str, space_file: Path | None, methods: Sequence[str] = ()) -> None:
    """Refuse a misspelt name or a broken space file in a fraction of a second: before the runner
    loads torch, Ray and Optuna (the full checks follow there)."""
    from drltune.declarations import check_names
    from drltune.search.space_file import read_space

    check_names("dataset", [dataset])
    check_names("method", methods, "--methods")
    if space_file is not None:
        read_space(space_file)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@click.command("dashboard")
@storage_option
@click.option(
    "--study",
    "study_name",
    help="Print this study's page address [default: the storage's only study].",
)
@click.option(
    "--artifact-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Trial artifacts (history.csv, learning_curve.svg) [default: artifacts/ beside the SQLite "
    "file, else ./studies/artifacts].",
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to serve on; anything but loopback exposes the study to the network.",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=8080,
    show_default=True,
    help="Port to serve on.",
)
def dashboard_cmd(storage, study_name, artifact_dir, host, port) -> None:
    """Open optuna-dashboard on a search's storage (loopback only unless you say otherwise)."""
    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    from drltune.search.dashboard_view import artifact_dir as default_artifact_dir
    from drltune.search.storage import open_reader, shown

    backend = open_reader(
        storage
    )  # optuna-dashboard's own edits (notes, deletes) still write through it
    if not is_loopback(host):
        click.echo(
            f"warning: binding to {host}: optuna-dashboard has unauthenticated endpoints that can "
            "change or delete studies; expose it only on a trusted network",
            err=True,
        )
    page = study_page(backend, study_name)
    folder = artifact_dir or default_artifact_dir(storage)
    click.echo(
        f"optuna-dashboard on {shown(storage)}: http://{host}:{port}{page}  (Ctrl-C to stop)"
    )
    click.echo(f"artifacts from {folder}" + ("" if folder.is_dir() else " (none yet)"))
    optuna_dashboard.run_server(
        backend, host=host, port=port, artifact_store=FileSystemArtifactStore(folder)
    )


def study_page(storage, study_name: str | None) -> str:
    """`/dashboard/studies/<id>` of the named study, or of the only one; `` when there are
    several."""
    from drltune.errors import DrltuneError
    from drltune.search.optuna_private import study_id_of

    studies = {s.study_name: study_id_of(s) for s in storage.get_all_studies()}
    if study_name is None:
        return f"/dashboard/studies/{next(iter(studies.values()))}" if len(studies) == 1 else ""
    if study_name not in studies:
        raise DrltuneError(
            f"no study named {study_name!r}; existing studies: "
            f"{', '.join(sorted(studies)) or 'none'}"
        )
    return f"/dashboard/studies/{studies[study_name]}"


COMMANDS = [search_cmd, dashboard_cmd]
