"""`drltune explore` (tables + HTML report of a study) and `drltune export` (best configs as
YAML)."""

from __future__ import annotations

from pathlib import Path

import click

from drltune.commands.storage_option import storage_option
from drltune.errors import DrltuneError

STUDY = click.option(
    "--study",
    help="Study name (as `drltune search` printed it) [default: the storage's only study].",
)


@click.command("explore")
@STUDY
@storage_option
@click.option(
    "--top",
    type=click.IntRange(1, 10_000),
    default=10,
    show_default=True,
    help="Rows of the top-trials table.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "json"]),
    default="table",
    show_default=True,
    help="table for reading; csv (the top-trials table, every column) or json (everything) for "
    "scripts.",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False),
    help="Write the plotly report here [default: studies/<study>/report.html beside the storage].",
)
@click.option("--no-html", is_flag=True, help="Do not write the HTML report.")
def explore_cmd(
    study: str | None, storage: str, top: int, fmt: str, html_path: str | None, no_html: bool
) -> None:
    """Summarise a study: top trials, best per method and fusion, counts, importances, HTML report."""  # noqa: E501 (click help's summary)
    from drltune.explore.load import history_frame, open_study, trials_frame
    from drltune.explore.report import default_report_path, write_report
    from drltune.explore.summary import render_csv, render_json, render_table, summarize

    if no_html and html_path:
        raise DrltuneError("--html and --no-html contradict each other")
    loaded = open_study(study, storage)
    study = loaded.study_name
    summary = summarize(loaded, top)
    render = {"table": render_table, "csv": render_csv, "json": render_json}[fmt]
    click.echo(render(summary).rstrip("\n"))
    if not no_html:
        path = write_report(
            html_path or default_report_path(study, storage),
            summary,
            trials_frame(loaded),
            history_frame(loaded),
        )
        click.echo(f"report: {path}", err=fmt != "table")  # keep csv/json on stdout clean


@click.command("export")
@STUDY
@storage_option
@click.option(
    "--top",
    type=click.IntRange(1, 10_000),
    help="Export the K best complete trials [default: 1]; of a "
    "two-objective study, the first K of its Pareto front by its first objective.",
)
@click.option(
    "--trial",
    "numbers",
    type=click.IntRange(0),
    multiple=True,
    help="Export this trial (repeatable).",
)
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(dir_okay=False, allow_dash=True),
    help="YAML file to write (- for stdout); run it with `drltune train --config FILE`.",
)
def export_cmd(
    study: str | None, storage: str, top: int | None, numbers: tuple[int, ...], output: str
) -> None:
    """Write the configs of the best (or chosen) trials as TrialConfig YAML, one document each."""
    from drltune.explore.export import export_yaml, select_trials
    from drltune.explore.load import open_study

    if top and numbers:
        raise DrltuneError("use --top K or --trial N, not both")
    loaded = open_study(study, storage)
    trials = select_trials(loaded, top, numbers)
    text = export_yaml(loaded, trials)
    if output == "-":
        click.echo(text, nl=False)
        return
    try:
        Path(output).parent.mkdir(parents=True, exist_ok=True)
        Path(output).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise DrltuneError(f"cannot write {output}: {exc.strerror}") from None
    listed = ", ".join(str(t.number) for t in trials)
    if len(loaded.directions) > 1 and not numbers:
        from drltune.search.objective import pareto_front

        front = ", ".join(f"#{t.number}" for t in pareto_front(loaded))
        click.echo(
            f"Pareto front ({', '.join(loaded.metric_names or [])}): {front}; written: the first "
            f"{len(trials)} by {(loaded.metric_names or ['the first objective'])[0]} (--trial N "
            "picks others)"
        )
    click.echo(
        f"wrote {len(trials)} config(s) (trial {listed}) to {output}; run: drltune train --config "
        f"{output}"
    )


@click.command("studies")
@storage_option
@click.option(
    "--compare",
    nargs=2,
    metavar="A B",
    help="Show two studies side by side (their best trials, counts, "
    "settings); the method leaderboard is `drltune compare`.",
)
@click.option(
    "--delete",
    "delete_name",
    metavar="NAME",
    help="Delete this study and its trials (asks first; refused while a search runs on it).",
)
@click.option("--yes", is_flag=True, help="With --delete: do not ask.")
def studies_cmd(
    storage: str, compare: tuple[str, str] | None, delete_name: str | None, yes: bool
) -> None:
    """List the studies of a storage with their trial counts by state."""
    from drltune.explore.studies import compare_lines, delete, overview, overview_lines
    from drltune.search.storage import open_reader, open_writer, shown

    if compare and delete_name:
        raise click.UsageError("use --compare or --delete, not both")
    if yes and not delete_name:
        raise click.UsageError("--yes goes with --delete")
    if delete_name:
        backend = open_writer(
            storage, heartbeat=True, create=False
        )  # heartbeats: a live search refuses
        if not yes and not click.confirm(
            f"delete study {delete_name!r} and all its trials from {shown(storage)}?"
        ):
            raise DrltuneError("not deleted")
        n = delete(backend, storage, delete_name)
        click.echo(f"deleted study {delete_name!r} ({n} trials)")
        return
    if compare:
        from drltune.explore.load import open_study

        backend = open_reader(storage)
        click.echo(
            "\n".join(
                compare_lines(
                    open_study(compare[0], storage, backend),
                    open_study(compare[1], storage, backend),
                )
            )
        )
        return
    rows = overview(open_reader(storage))
    if not rows:
        click.echo(f"no study in {shown(storage)} yet; run `drltune search` first")
        return
    click.echo("\n".join(overview_lines(rows)))


COMMANDS = [explore_cmd, export_cmd, studies_cmd]
