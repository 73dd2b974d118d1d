"""Ray start-up as functions of plain arguments (shared by search and verify), mostly without Ray."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from drltune.errors import DrltuneError
from drltune.search.ray_start import (
    FORWARDED_ENV,
    auto_gpus,
    check_reachable,
    init_ray,
)


class FakeRay:
    def __init__(self, gpus: float = 0.0, fail: Exception | None = None) -> None:
        self.gpus, self.fail, self.kwargs = gpus, fail, None

    def cluster_resources(self) -> dict:
        return {"CPU": 8.0, "GPU": self.gpus} if self.gpus else {"CPU": 8.0}

    def init(self, **kwargs) -> None:
        self.kwargs = kwargs
        if self.fail:
            raise self.fail


def test_auto_gpus_shares_the_clusters_gpus():
    assert auto_gpus(FakeRay(), 4) == 0.0
    assert auto_gpus(FakeRay(gpus=1.0), 3) == 0.3333  # Ray takes 4 decimals
    assert auto_gpus(FakeRay(gpus=8.0), 2) == 1.0  # never more than one per trial


def test_local_ray_gets_enough_cpus_and_never_joins_a_running_cluster(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray = FakeRay()
    init_ray(ray, None, concurrent=64, cpus_per_task=2)
    assert ray.kwargs["address"] == "local" and ray.kwargs["num_cpus"] >= 128


def test_a_cluster_gets_the_forwarded_environment(monkeypatch):
    monkeypatch.setenv(FORWARDED_ENV[0], "x")
    ray = FakeRay()
    init_ray(ray, "head:6379", concurrent=1, cpus_per_task=1)
    assert ray.kwargs["address"] == "head:6379"
    assert ray.kwargs["runtime_env"]["env_vars"][FORWARDED_ENV[0]] == "x"


def test_a_failed_start_is_one_line(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(DrltuneError, match=r"^cannot start or join a local Ray instance: boom$"):
        init_ray(FakeRay(fail=RuntimeError("boom\ntraceback")), None, 1, 1)


def test_nothing_listening_fails_fast():
    with pytest.raises(DrltuneError, match="no Ray cluster reachable"):
        check_reachable("127.0.0.1:1")


@pytest.mark.slow
def test_local_workers_run_at_the_drivers_priority(monkeypatch):
    """Ray starts workers at niceness 15, where any other busy process on the machine starves the
    trials (a search ran 6.5 times slower beside two CPU-bound loops). In a fresh interpreter:
    this one may hold another test's Ray."""
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_worker_niceness", raising=False)
    code = (
        "import os\n"
        "from drltune.search.ray_start import init_ray, quiet_ray_env\n"
        "quiet_ray_env()\n"
        "import ray\n"
        "init_ray(ray, None, concurrent=1, cpus_per_task=1)\n"
        "print('worker', ray.get(ray.remote(num_cpus=1)(lambda: os.nice(0)).remote(), timeout=300))\n"
        "ray.shutdown()\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert f"worker {os.nice(0)}" in run.stdout.splitlines()
