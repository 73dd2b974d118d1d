"""`drltune` entry point: each command lives in drltune/commands/; errors print as one line.

Commands are imported only when they run: `drltune --help` and `--version` never load torch,
Ray or Optuna (the listing below carries each command's one-line help, checked by a test
against the command's own docstring).
"""

from __future__ import annotations

import importlib
import sys

import click

from drltune import __version__
from drltune.declarations import names
from drltune.errors import DrltuneError

# name -> (module under drltune.commands, the first line of the command's help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train", "Train one configuration, select on validation, evaluate on test once."),
    "search": (
        "search",
        "Search hyperparameters: Optuna samples and prunes, Ray Tune runs the trials; resumable.",
    ),
    "dashboard": (
        "search",
        "Open optuna-dashboard on a search's storage (loopback only unless you say otherwise).",
    ),
    "studies": ("explore", "List the studies of a storage with their trial counts by state."),
    "explore": (
        "explore",
        "Summarise a study: top trials, best per method and fusion, counts, importances, "
        "HTML report.",
    ),
    "export": (
        "explore",
        "Write the configs of the best (or chosen) trials as TrialConfig YAML, one document each.",
    ),
    "verify": (
        "verify",
        "Re-train the best trials on fresh seeds and compare them with reference methods.",
    ),
    "compare": (
        "compare",
        "Tune each method on the same budget, verify the winners on fresh seeds: a leaderboard; "
        "resumable.",
    ),
    "prepare": (
        "prepare",
        "Decode a downloaded dataset into audio features, frames and split lists.",
    ),
    "methods": ("listing", "List the balancing methods and their parameters."),
    "datasets": ("listing", "List the datasets and their parameters."),
    "fusions": ("listing", "List the fusion heads."),
    "config": ("listing", "List the TrialConfig training knobs with their defaults and ranges."),
}


def load_command(name: str) -> click.Command:
    """Import the command's module and return the command it registers under `name`."""
    module = importlib.import_module(f"drltune.commands.{COMMANDS[name][0]}")
    for command in module.COMMANDS:
        if command.name == name:
            return command
    raise LookupError(f"drltune.commands.{COMMANDS[name][0]} has no command {name!r}")


class LazyGroup(click.Group):
    """A click group whose commands are imported on use; the listing comes from COMMANDS."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return load_command(cmd_name) if cmd_name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, short) for name, (_, short) in COMMANDS.items()])
        with formatter.section("Methods (`drltune methods` lists their parameters)"):
            formatter.write_text(", ".join(names("method")))  # read from the source: no torch


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drltune")
def cli() -> None:
    """Hyperparameter search for multimodal-imbalance training: DR and its peers (listed below)."""


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a user mistake is one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(args=argv, prog_name="drltune", standalone_mode=False)
    except DrltuneError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)  # 2: usage (bad input), 1: a runtime failure
    except click.exceptions.Abort:
        click.echo("error: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}".replace("\n", " "), err=True)
        sys.exit(exc.exit_code or 2)
    except KeyboardInterrupt:
        click.echo("error: interrupted", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
