"""`drltune methods`, `datasets`, `fusions` and `config`: what is registered or declared, with
parameters.

Read from the declarations (drltune.declarations), not by importing the methods: a listing takes
no torch.
"""

from __future__ import annotations

import click

from drltune.declarations import Declaration, declarations


def _print_entries(entries: list[Declaration]) -> None:
    for entry in entries:
        click.echo(f"{entry.name}: {entry.description}")
        for p in entry.params:
            click.echo(f"    {p.describe()}")


@click.command("methods")
def methods_cmd() -> None:
    """List the balancing methods and their parameters."""
    _print_entries(declarations("method"))


@click.command("datasets")
def datasets_cmd() -> None:
    """List the datasets and their parameters."""
    _print_entries(declarations("dataset"))


@click.command("fusions")
def fusions_cmd() -> None:
    """List the fusion heads."""
    for fusion in declarations("fusion"):
        click.echo(f"{fusion.name}: {fusion.summary}")


@click.command("config")
def config_cmd() -> None:
    """List the TrialConfig training knobs with their defaults and ranges."""
    from drltune.config import KNOBS, SETTINGS

    click.echo("training knobs (unset: the dataset's default, then this one):")
    for p in KNOBS:
        click.echo(f"    {p.describe()}")
    click.echo("other settings:")
    for p in SETTINGS:
        click.echo(f"    {p.describe()}")
    click.echo(
        "and: dataset, data_root, method, fusion, device (auto | cpu | cuda[:N]), params, "
        "dataset_params"
    )


COMMANDS = [methods_cmd, datasets_cmd, fusions_cmd, config_cmd]
