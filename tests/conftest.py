"""Shared fixtures: tiny data and one CPU thread, so the suite fits 2 cores."""
from __future__ import annotations

import os

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
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def postgres_url():
    """URL of a PostgreSQL test database (.ci/run starts one and sets DRLTUNE_TEST_POSTGRES_URL)."""
    import os

    import sqlalchemy

    url = os.environ.get("DRLTUNE_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("no PostgreSQL server: set DRLTUNE_TEST_POSTGRES_URL (.ci/run starts one on loopback)")
    try:
        engine = sqlalchemy.create_engine(url, connect_args={"connect_timeout": 5})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # unreachable server, missing driver: skip and say which
        pytest.skip(f"PostgreSQL at DRLTUNE_TEST_POSTGRES_URL not reachable: {str(exc).splitlines()[0]}")
    return url
