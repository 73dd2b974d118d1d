"""Where a study lives: one place that turns a storage URL into an Optuna storage object.

Any SQLAlchemy URL works (`sqlite:///path.db`, `postgresql://host/db`, ...). The default is
`studies/drltune.db` under the current directory, so a search "works from any directory" and
keeps its files next to where it was started.
"""
from __future__ import annotations

import time
from pathlib import Path

import optuna
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, ProgrammingError, SQLAlchemyError

from drltune.errors import DrltuneError

STUDIES_DIR = "studies"
DEFAULT_DB = "drltune.db"
SCHEMA_RACE_RETRIES = 3


def default_storage_url(cwd: Path | None = None) -> str:
    """`sqlite:///<cwd>/studies/drltune.db`, absolute so that Ray workers and later runs agree."""
    return f"sqlite:///{(cwd or Path.cwd()).resolve() / STUDIES_DIR / DEFAULT_DB}"


def resolve_storage_url(url: str | None) -> str:
    """The URL a search or the dashboard uses: the default when none is given, else `url` checked."""
    if not url:
        return default_storage_url()
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DrltuneError(f"--storage {url!r}: not a database URL (e.g. sqlite:///studies/drltune.db "
                           "or postgresql://user@host/db)") from None
    if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
        raise DrltuneError("--storage: an in-memory SQLite database would lose the study; give a file path")
    return url


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database).expanduser()


def display_url(url: str) -> str:
    """The URL with any password masked, for printing (never print credentials)."""
    return make_url(url).render_as_string(hide_password=True)


def open_storage(url: str | None) -> optuna.storages.BaseStorage:
    """An Optuna RDB storage for `url` (creating the SQLite file's folder); errors are one line."""
    url = resolve_storage_url(url)
    path = sqlite_path(url)
    engine_kwargs = {}
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DrltuneError(f"cannot create {path.parent}: {exc.strerror}") from None
        # The dashboard may read while the driver writes: wait for the lock instead of failing.
        engine_kwargs = {"connect_args": {"timeout": 30}}
    for attempt in range(SCHEMA_RACE_RETRIES + 1):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)
        except (IntegrityError, ProgrammingError, OperationalError) as exc:
            # Several drivers opening an empty database at once race to create Optuna's tables
            # (duplicate key / table exists / database is locked): the loser retries.
            racing = not isinstance(exc, OperationalError) or "locked" in str(exc)
            if not racing or attempt == SCHEMA_RACE_RETRIES:
                first = str(exc).strip().splitlines()[0]
                raise DrltuneError(f"cannot open storage {display_url(url)}: {first}") from None
            time.sleep(0.5 + attempt)
        except (SQLAlchemyError, ImportError, ValueError, RuntimeError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DrltuneError(f"cannot open storage {display_url(url)}: {first}") from None
    raise AssertionError("unreachable")
