"""`drltune` entry point: each command lives in drltune/commands/; errors print as one line."""
from __future__ import annotations

import sys

import click

from drltune import __version__
from drltune.errors import DrltuneError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="drltune")
def cli() -> None:
    """Hyperparameter search for multimodal-imbalance training (DR, OGM-GE, PMR, ARL)."""


def _register() -> None:
    from drltune.commands import listing, train

    for module in (train, listing):
        for command in module.COMMANDS:
            cli.add_command(command)
    for name in ("search", "explore", "prepare"):  # added by later modules, when present
        try:
            module = __import__(f"drltune.commands.{name}", fromlist=["COMMANDS"])
        except ModuleNotFoundError as exc:
            if exc.name != f"drltune.commands.{name}":
                raise
            continue
        for command in module.COMMANDS:
            cli.add_command(command)


_register()


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; a user mistake is one line on stderr and a non-zero exit, never a traceback."""
    try:
        cli.main(args=argv, prog_name="drltune", standalone_mode=False)
    except DrltuneError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
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
