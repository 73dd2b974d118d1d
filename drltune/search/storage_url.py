"""What a `--storage` string names, resolved once where a command starts.

Light on purpose (SQLAlchemy loads only when a URL is resolved): the commands' shared `--storage`
option reads its default and environment variable here without loading Optuna. Everything below
the command receives the resolved string and never resolves it again.
"""

from __future__ import annotations

from pathlib import Path

from drltune.errors import DrltuneError

DEFAULT_URL = (
    "sqlite:///studies/drltune.db"  # relative: resolved against the directory a command starts in
)
STORAGE_ENV = "OPTUNA_STORAGE"  # read when --storage is not given, as Optuna's own CLI does


def resolve_storage_url(raw: str | None, cwd: Path | None = None, named: str = "--storage") -> str:
    """`raw` (None or '': the default) as every later step uses it: a relative SQLite database or
    journal file made absolute against `cwd` (the current directory), so that Ray workers, later
    runs and every module agree on one file. `named` is how an error names where `raw` came from."""
    raw = raw or DEFAULT_URL
    base = (cwd or Path.cwd()).resolve()
    if "://" not in raw:  # an Optuna journal file (readers only: a search needs a database URL)
        return str(base / Path(raw).expanduser())
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise DrltuneError(
            f"{named} {raw!r}: not a database URL (e.g. sqlite:///studies/drltune.db "
            "or postgresql://user@host/db)"
        ) from None
    if parsed.get_backend_name() != "sqlite":
        return raw
    database = parsed.database
    if database in (None, "", ":memory:"):
        raise DrltuneError(
            f"{named}: an in-memory SQLite database would lose the study; give a file path"
        )
    assert database is not None
    if (
        database.startswith("file:") or Path(database).is_absolute()
    ):  # SQLite's URI form, or absolute: as written
        return raw
    return parsed.set(database=str(base / Path(database).expanduser())).render_as_string(
        hide_password=False
    )
