"""`drltune methods`, `datasets`, `fusions` and `config`: what is registered or declared, with parameters."""
from __future__ import annotations

import click


def _print_entries(entries) -> None:
    for name, description, params in entries:
        click.echo(f"{name}: {description}")
        for p in params:
            click.echo(f"    {p.describe()}")


@click.command("methods")
def methods_cmd() -> None:
    """List the balancing methods and their parameters."""
    from drltune.methods import METHODS

    _print_entries((n, METHODS.get(n).description, METHODS.get(n).params) for n in METHODS)


@click.command("datasets")
def datasets_cmd() -> None:
    """List the datasets and their parameters."""
    from drltune.data import DATASETS

    _print_entries((n, DATASETS.get(n).description, DATASETS.get(n).params) for n in DATASETS)


@click.command("fusions")
def fusions_cmd() -> None:
    """List the fusion heads."""
    from drltune.models.fusion import FUSIONS

    for name in FUSIONS:
        click.echo(f"{name}: {FUSIONS.get(name).__doc__.strip().splitlines()[0]}")


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
    click.echo("and: dataset, data_root, method, fusion, device (auto | cpu | cuda[:N]), params, dataset_params")


COMMANDS = [methods_cmd, datasets_cmd, fusions_cmd, config_cmd]
