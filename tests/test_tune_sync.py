"""Tune's failed experiment-state sync: one warning line, no traceback, other errors untouched."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from drltune.search.tune_sync import SYNC_FAILURES, SYNC_LOGGERS, tolerate_state_sync


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def tune_records():
    handler = _Records()
    loggers = [logging.getLogger(name) for name in SYNC_LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler.records
    for logger in loggers:
        logger.removeHandler(handler)


class _VanishedFileSyncer:
    """What pyarrow does when a file Tune listed is renamed before the copy reaches it."""

    def wait(self) -> None:
        raise FileNotFoundError("[Errno 2] Failed to open local file '.tmp_experiment_state'")

    def sync_up(self, local_dir: str, remote_dir: str) -> bool:
        return True


class _Storage:
    experiment_driver_staging_path = "/staging"
    experiment_fs_path = "/results/exp"
    syncer = _VanishedFileSyncer()


def test_tunes_own_sync_failure_prints_one_warning_line_and_no_traceback(tune_records):
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    manager = _ExperimentCheckpointManager(storage=_Storage(), checkpoint_period="auto")
    warned: list[str] = []
    with tolerate_state_sync(warned.append):
        manager.sync_up_experiment_state(save_fn=lambda: None, force=True)  # Tune's real code logs the failure
    assert tune_records == []
    assert len(warned) == 1 and warned[0].startswith("warning: ") and "FileNotFoundError" in warned[0]
    assert "\n" not in warned[0]


def test_without_the_guard_tune_logs_the_traceback(tune_records):
    """The guard is what hides it: Tune itself logs an error with the exception attached."""
    from ray.tune.execution.experiment_state import _ExperimentCheckpointManager

    _ExperimentCheckpointManager(storage=_Storage(), checkpoint_period="auto").sync_up_experiment_state(
        save_fn=lambda: None, force=True)
    assert [r.exc_info is not None for r in tune_records] == [True]


def test_the_final_snapshot_message_is_the_one_tune_logs():
    """ray/tune/tune.py logs its final snapshot failure with this text; a newer Ray must keep it."""
    import ray.tune.tune as tune_module

    assert SYNC_FAILURES[1] in Path(tune_module.__file__).read_text()


def test_other_tune_errors_pass_and_a_clean_sync_warns_nothing(tune_records):
    warned: list[str] = []
    with tolerate_state_sync(warned.append):
        logging.getLogger("ray.tune.tune").error("Trials did not complete: %s", ["t1"])
    assert [r.getMessage() for r in tune_records] == ["Trials did not complete: ['t1']"]
    assert warned == []
