"""Shared fixtures: tiny data and one CPU thread, so the suite fits 2 cores."""
from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)
os.environ.pop("OPTUNA_STORAGE", None)  # the developer's own storage must not reach the commands under test

TINY_DATA = {"n_train": 60, "n_val": 24, "n_test": 24, "audio_freq": 16, "audio_time": 16, "image_size": 16}


@pytest.fixture
def tiny_config():
    """A TrialConfig factory on tiny synthetic data with a width-4 ResNet-18."""
    from drltune.config import TrialConfig

    def make(**overrides):
        base = {"epochs": 2, "batch_size": 16, "encoder_width": 4, "dataset_params": dict(TINY_DATA)}
        base.update(overrides)
        return TrialConfig.from_dict(base)

    return make


def pytest_collection_modifyitems(config, items):
    if config.getoption("dist", "no") != "no":  # pytest-xdist: files with end-to-end tests first, none left for last
        slow_files = {item.path for item in items if "slow" in item.keywords}
        items.sort(key=lambda item: item.path not in slow_files)
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _server_turn(url: str, alone: bool):
    """A lock shared by every test on the server at `url`, also across pytest-xdist workers and other
    runs; a test that stops the server holds it alone."""
    lock = Path(tempfile.gettempdir()) / f"drltune-test-postgres-{hashlib.sha256(url.encode()).hexdigest()[:12]}.lock"
    held = open(lock, "a")
    fcntl.flock(held, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)  # released on close, also if this process dies
    return held


@pytest.fixture(autouse=True)
def _postgres_turns(request):
    """Tests on the shared PostgreSQL server take turns with those that stop it (each its own study)."""
    params = request.node.callspec.params.values() if hasattr(request.node, "callspec") else ()
    if "postgres_url" not in request.fixturenames and "postgresql" not in params:
        yield
        return
    with _server_turn(request.getfixturevalue("postgres_url"), alone=False):  # skips without a server
        yield


@pytest.fixture
def stoppable_postgres():
    """(URL, control command) of a PostgreSQL server that the test may stop and restart
    ("$CTL stop|start"): .ci/run's second server, which no other test uses, or else the shared one,
    held alone while the test runs."""
    import os

    url, ctl = os.environ.get("DRLTUNE_TEST_POSTGRES2_URL"), os.environ.get("DRLTUNE_TEST_POSTGRES2_CTL")
    if not (url and ctl):
        url, ctl = os.environ.get("DRLTUNE_TEST_POSTGRES_URL"), os.environ.get("DRLTUNE_TEST_POSTGRES_CTL")
    if not (url and ctl):
        pytest.skip("no PostgreSQL server to stop: set DRLTUNE_TEST_POSTGRES_URL and _CTL (.ci/run does)")
    with _server_turn(_reachable(url), alone=True):
        yield url, ctl


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL test database (.ci/run starts one and sets DRLTUNE_TEST_POSTGRES_URL)."""
    import os

    url = os.environ.get("DRLTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: set DRLTUNE_TEST_POSTGRES_URL (.ci/run starts one on loopback)")
    return _reachable(url)


def _reachable(url: str) -> str:
    """`url`, or skip the test saying why the server cannot be reached."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # unreachable server, missing driver: skip and say which
        pytest.skip(f"PostgreSQL at {url} not reachable: {str(exc).splitlines()[0]}")
    return url
