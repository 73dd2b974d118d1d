"""`drltune compare`: a method leaderboard on equal tuning budgets, verified on fresh seeds."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from drltune.commands.search import check_early, finite
from drltune.commands.storage_option import storage_option
from drltune.search.options import PRUNERS, SAMPLERS


def _methods(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    names = list(dict.fromkeys(n.strip() for n in value.split(",") if n.strip()))
    if not names:
        raise click.BadParameter(
            "name at least one method, e.g. baseline,dr,ogm_ge", ctx=ctx, param=param
        )
    return names


@click.command("compare")
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
    "--methods",
    required=True,
    callback=_methods,
    help="Comma-separated methods, each searched in its own study (e.g. baseline,dr,ogm_ge).",
)
@click.option(
    "--trials-per-method",
    type=click.IntRange(1, 1_000_000),
    required=True,
    help="Finished trials each method's search reaches (earlier runs count).",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 30),
    default=3,
    show_default=True,
    help="Fresh seeds each best config (and published config) is trained on; the same for every "
    "method.",
)
@click.option(
    "--space",
    "space_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Search space YAML; its shared knobs are searched for every method, its `methods:` block "
    "gives each method's own ranges (declared ranges when absent) [default: the shipped space].",
)
@click.option(
    "--name",
    "prefix",
    help="Study name prefix: studies are PREFIX-METHOD [default: compare-DATASET].",
)
@storage_option
@click.option(
    "--published",
    type=click.Choice(["papers", "balancebenchmark", "none"]),
    default="papers",
    show_default=True,
    help="Reference rows: each method's published config (its paper's, or "
    "BalanceBenchmark's protocol) on the same seeds and epoch budget.",
)
@click.option(
    "--sampler",
    type=click.Choice(SAMPLERS),
    default="tpe",
    show_default=True,
    help="Optuna sampler of every method's search: tpe, random, or gp (flat spaces only).",
)
@click.option(
    "--pruner",
    type=click.Choice(PRUNERS),
    default="median",
    show_default=True,
    help="The same pruner for every method's search.",
)
@click.option(
    "--max-epochs",
    type=click.IntRange(1, 100_000),
    help="Each trial's epoch budget [default: the dataset's].",
)
@click.option(
    "--concurrent",
    type=click.IntRange(1, 10_000),
    default=2,
    show_default=True,
    help="Runs at a time.",
)
@click.option(
    "--cpus-per-trial",
    type=click.FloatRange(0.0, min_open=True),
    default=1.0,
    show_default=True,
    callback=finite,
    help="CPUs of each trial and verification run.",
)
@click.option(
    "--gpus-per-trial",
    type=click.FloatRange(0.0),
    callback=finite,
    help="[default: the GPUs Ray sees / --concurrent, at most 1; 0 without GPUs].",
)
@click.option("--address", help="Join this Ray cluster (e.g. auto, 10.0.0.5:6379).")
@click.option(
    "--seed",
    type=click.IntRange(0, 2**31 - 1),
    default=0,
    show_default=True,
    help="Seed of every search trial and of the samplers (the verification seeds are fresh ones).",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the leaderboard here.",
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Fix a TrialConfig key for every run, e.g. dataset_params.n_train=120.",
)
def compare_cmd(
    dataset,
    data_root,
    methods,
    trials_per_method,
    seeds,
    space_file,
    prefix,
    storage,
    published,
    sampler,
    pruner,
    max_epochs,
    concurrent,
    cpus_per_trial,
    gpus_per_trial,
    address,
    seed,
    csv_path,
    overrides,
) -> None:
    """Tune each method on the same budget, verify the winners on fresh seeds: a leaderboard; resumable."""  # noqa: E501 (click help's summary)
    check_early(dataset, space_file, methods)
    from drltune.compare.leaderboard import leaderboard_csv, leaderboard_lines
    from drltune.compare.run import CompareSpec, run_compare
    from drltune.errors import DrltuneError
    from drltune.search.runner import DEFAULT_SPACE

    spec = CompareSpec(
        methods=methods,
        trials_per_method=trials_per_method,
        seeds=seeds,
        dataset=dataset,
        data_root=data_root,
        space_file=space_file or DEFAULT_SPACE,
        prefix=prefix,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        max_epochs=max_epochs,
        concurrent=concurrent,
        cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial,
        address=address,
        seed=seed,
        published=None if published == "none" else published,
        overrides=list(overrides),
        command=shlex.join(["drltune", *sys.argv[1:]]),
    )
    rows = run_compare(spec, echo=click.echo)
    click.echo(
        f"\nleaderboard of {spec.name}: each method's best trial re-trained on {seeds} "
        "fresh seeds;\n"
        "test accuracy at the epoch selected on validation; published: the method's "
        "published config"
    )
    for line in leaderboard_lines(rows):
        click.echo(line)
    if csv_path:
        try:
            csv_path.parent.mkdir(parents=True, exist_ok=True)
            csv_path.write_text(leaderboard_csv(rows), encoding="utf-8")
        except OSError as exc:
            raise DrltuneError(f"cannot write {csv_path}: {exc.strerror}") from None
        click.echo(f"leaderboard CSV: {csv_path}")


COMMANDS = [compare_cmd]
