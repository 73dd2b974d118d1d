"""Tune's own experiment-state sync failing must not look like a failed search.

Tune copies its experiment state (trial statuses, searcher snapshot) from the driver's staging
folder to the storage path in a background thread. Under load that copy can race a file that Tune
itself renames (pyarrow `FileNotFoundError`); Tune catches it and logs an error with a traceback
(ray/tune/execution/experiment_state.py `wait_for_sync`, ray/tune/tune.py final checkpoint). drltune
never resumes from that state: every result lives in the Optuna study. So the traceback is dropped
and the search says so in one warning line; the exit code stays the search's own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

# The loggers and the messages Tune uses for a failed experiment-state sync (Ray 2.x).
SYNC_LOGGERS = ("ray.tune.execution.experiment_state", "ray.tune.tune")
SYNC_FAILURES = ("Saving experiment state to storage at", "Experiment state snapshotting failed")


class _SyncFailures(logging.Filter):
    """Drops Tune's sync-failure records and keeps the first failure's one-line reason."""

    def __init__(self) -> None:
        super().__init__()
        self.reason: str | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(SYNC_FAILURES):
            return True
        if self.reason is None:
            exc = record.exc_info[1] if record.exc_info else None
            self.reason = f"{type(exc).__name__}: {exc}" if exc is not None else record.getMessage()
        return False


@contextmanager
def tolerate_state_sync(warn: Callable[[str], None]) -> Iterator[None]:
    """Within the block, a failed Tune state sync prints no traceback; after it, one warning
    line."""
    failures = _SyncFailures()
    loggers = [logging.getLogger(name) for name in SYNC_LOGGERS]
    for logger in loggers:
        logger.addFilter(failures)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(failures)
        if failures.reason is not None:
            reason = (
                failures.reason.strip().splitlines()[0]
                if failures.reason.strip()
                else "no reason given"
            )
            warn(
                f"warning: Ray Tune could not copy its own experiment state ({reason}); "
                "every trial result is in the study storage, nothing is lost"
            )
