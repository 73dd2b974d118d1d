"""`drltune verify`: train a study's best configs again on fresh seeds, beside reference methods."""

from __future__ import annotations

import click

from drltune.commands.explore import STUDY
from drltune.commands.search import finite
from drltune.commands.storage_option import storage_option
from drltune.errors import DrltuneError


def _references(ctx: click.Context, param: click.Parameter, value: str) -> list[str]:
    """`baseline,dr` -> ['baseline', 'dr'] (order kept, duplicates dropped)."""
    names = [n.strip() for n in value.split(",") if n.strip()] if value else []
    return list(dict.fromkeys(names))


@click.command("verify")
@STUDY
@storage_option
@click.option(
    "--top", type=click.IntRange(1, 1000), help="Verify the K best complete trials [default: 3]."
)
@click.option(
    "--trial",
    "numbers",
    type=click.IntRange(0),
    multiple=True,
    help="Verify this trial (repeatable).",
)
@click.option(
    "--seeds",
    type=click.IntRange(1, 30),
    default=3,
    show_default=True,
    help="Fresh seeds per config (never a seed the search trained with).",
)
@click.option(
    "--reference",
    "references",
    default="baseline",
    show_default=True,
    callback=_references,
    help="Comma-separated methods run at their declared defaults under each winner's training "
    "knobs (lr, batch size, optimiser, fusion, epochs); '' for none.",
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
    help="CPUs Ray reserves per training run.",
)
@click.option(
    "--gpus-per-trial",
    type=click.FloatRange(0.0),
    callback=finite,
    help="[default: the GPUs Ray sees / --concurrent, at most 1; 0 without GPUs].",
)
@click.option("--address", help="Join this Ray cluster (e.g. auto, 10.0.0.5:6379).")
def verify_cmd(
    study,
    storage,
    top,
    numbers,
    seeds,
    references,
    concurrent,
    cpus_per_trial,
    gpus_per_trial,
    address,
) -> None:
    """Re-train the best trials on fresh seeds and compare them with reference methods.

    Seed-paired: the mean difference with a Student-t 95 % interval; every run is stored in the
    study, so the same command resumes and `drltune explore` shows the figures."""
    from drltune.explore.export import select_trials
    from drltune.explore.load import open_study
    from drltune.methods import METHODS
    from drltune.verify import (
        SEEDS_ATTR,
        execute,
        fresh_seeds,
        plan,
        stored_runs,
        verified_lines,
        verified_rows,
    )

    if top and numbers:
        raise DrltuneError("use --top K or --trial N, not both")
    unknown = [r for r in references if r not in METHODS]
    if unknown:
        raise DrltuneError(
            f"--reference {unknown[0]!r}: unknown method; valid: {', '.join(METHODS)}"
        )
    from drltune.search.storage import open_writer

    # Written with retries: a SQLite file locked by a running search, or a server restarting, is
    # waited out instead of losing a finished run.
    loaded = open_study(study, storage, open_writer(storage, create=False))
    trials = select_trials(loaded, top or (None if numbers else 3), numbers)
    seed_list = fresh_seeds(loaded, seeds)
    notes: list[str] = []
    runs = plan(loaded, trials, seed_list, references, notes)
    for note in notes:
        click.echo(f"note: {note}")
    done = stored_runs(loaded)
    todo = [r for r in runs if r.key not in done]
    loaded.set_user_attr(
        SEEDS_ATTR, sorted(set(loaded.user_attrs.get(SEEDS_ATTR, [])) | set(seed_list))
    )
    click.echo(
        f"verifying trial(s) {', '.join(str(t.number) for t in trials)} of study "
        f"{loaded.study_name!r} on seeds {seed_list}"
        + (f" against {', '.join(references)}" if references else "")
        + f": {len(runs)} runs, {len(runs) - len(todo)} already stored, {len(todo)} to train"
    )
    failed = (
        execute(loaded, todo, concurrent, cpus_per_trial, gpus_per_trial, address, click.echo)
        if todo
        else 0
    )
    click.echo(
        "\ntest accuracy on fresh seeds (mean ± std); vs a reference: the seed-paired difference "
        "with its 95 % Student-t interval"
    )
    for line in verified_lines(verified_rows(loaded, {r.key for r in runs})):
        click.echo(line)
    if failed:
        raise DrltuneError(
            f"{failed} run(s) failed (see above); run the same command again to retry them"
        )


COMMANDS = [verify_cmd]
