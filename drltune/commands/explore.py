"""`drltune explore` (tables + HTML report of a study) and `drltune export` (best configs as YAML)."""
from __future__ import annotations

from pathlib import Path

import click

from drltune.errors import DrltuneError
from drltune.explore.load import DEFAULT_STORAGE

STUDY = click.option("--study", help="Study name (as `drltune search` printed it) [default: the storage's only study].")
STORAGE = click.option("--storage", default=DEFAULT_STORAGE, show_default=True,
                       help="Optuna storage: an SQLAlchemy URL or a journal file path; never created here.")


@click.command("explore")
@STUDY
@STORAGE
@click.option("--top", type=click.IntRange(1, 10_000), default=10, show_default=True, help="Rows of the top-trials table.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True,
              help="table for reading; csv (the top-trials table, every column) or json (everything) for scripts.")
@click.option("--html", "html_path", type=click.Path(dir_okay=False),
              help="Write the plotly report here [default: studies/<study>/report.html beside the storage].")
@click.option("--no-html", is_flag=True, help="Do not write the HTML report.")
def explore_cmd(study: str | None, storage: str, top: int, fmt: str, html_path: str | None, no_html: bool) -> None:
    """Summarise a study: top trials, best per method and fusion, counts, importances, HTML report."""
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
        path = write_report(html_path or default_report_path(study, storage), summary, trials_frame(loaded),
                            history_frame(loaded))
        click.echo(f"report: {path}", err=fmt != "table")  # keep csv/json on stdout clean


@click.command("export")
@STUDY
@STORAGE
@click.option("--top", type=click.IntRange(1, 10_000), help="Export the K best complete trials [default: 1].")
@click.option("--trial", "numbers", type=click.IntRange(0), multiple=True, help="Export this trial (repeatable).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, allow_dash=True),
              help="YAML file to write (- for stdout); run it with `drltune train --config FILE`.")
def export_cmd(study: str | None, storage: str, top: int | None, numbers: tuple[int, ...], output: str) -> None:
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
    click.echo(f"wrote {len(trials)} config(s) (trial {listed}) to {output}; run: drltune train --config {output}")


@click.command("studies")
@STORAGE
def studies_cmd(storage: str) -> None:
    """List the studies of a storage with their trial counts by state."""
    from drltune.explore.load import study_rows
    from drltune.search.storage import open_reader, shown

    rows = study_rows(open_reader(storage))
    if not rows:
        click.echo(f"no study in {shown(storage)} yet; run `drltune search` first")
        return
    width = max(len(r["study"]) for r in rows)
    for row in rows:
        labels = {"complete": "complete", "pruned": "pruned", "fail": "failed", "running": "running", "waiting": "queued"}
        states = ", ".join(f"{row[k]} {label}" for k, label in labels.items() if k in row)
        dataset = f"  dataset {row['dataset']}" if row["dataset"] else ""
        click.echo(f"{row['study']:<{width}}  {row['trials']:>5} trials" + (f" ({states})" if states else "") + dataset)


COMMANDS = [explore_cmd, export_cmd, studies_cmd]
