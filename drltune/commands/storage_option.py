"""`--storage`, declared once for every command that opens a study's storage.

The value comes from the flag, else $OPTUNA_STORAGE (the variable Optuna's own CLI reads), else the
one default; it is resolved here, once, as the command starts (storage_url.py), and the command
passes the resolved string down.
"""

from __future__ import annotations

from typing import Any, Callable, TypeVar

import click
from click.core import ParameterSource

from drltune.search.storage_url import DEFAULT_URL, STORAGE_ENV

F = TypeVar("F", bound=Callable[..., Any])

HELP = (
    "Optuna storage: a database URL (e.g. postgresql://user@host/db) or, to read, an Optuna "
    "journal file; a relative SQLite path is taken from the current directory."
)


def _resolved(ctx: click.Context, param: click.Parameter, value: str) -> str:
    from drltune.search.storage_url import resolve_storage_url

    source = ctx.get_parameter_source("storage")
    named: dict[ParameterSource | None, str] = {
        ParameterSource.ENVIRONMENT: f"${STORAGE_ENV}",
        ParameterSource.DEFAULT: "the default storage",
    }
    return resolve_storage_url(value, named=named.get(source, "--storage"))


def storage_option(command: F) -> F:
    """The `--storage` option; the command receives `storage`, resolved."""
    return click.option(
        "--storage",
        metavar="URL",
        envvar=STORAGE_ENV,
        show_envvar=True,
        default=DEFAULT_URL,
        show_default=True,
        callback=_resolved,
        help=HELP,
    )(command)
