"""Starting or joining Ray, shared by the drivers that train on it (`search`, `verify`).

Plain arguments, no search spec: whoever trains on Ray calls `quiet_ray_env()` before importing
Ray, `init_ray` to start or join it, and `auto_gpus` for each task's GPU share.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from typing import Any

from drltune.errors import DrltuneError, first_line

FORWARDED_ENV = (
    "DRLTUNE_FAULTS",
    "DRLTUNE_STORAGE_PATIENCE_S",  # to workers on a cluster
    "PYTORCH_CUDA_ALLOC_CONF",
    "CUBLAS_WORKSPACE_CONFIG",
)

# Before Ray is imported: no Tune loggers (CSV/JSON/TensorBoard files) and no Ray progress tables.
# Tune's experiment state (about 19 KB per trial, every trial ever run) is rewritten every 10-16 s
# by default: 42 MB each time at 2,000 trials. A search resumes from its Optuna study, never from
# that file, so it is written once an hour and at the end.
RAY_QUIET_ENV = {
    "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1",
    "RAY_AIR_NEW_OUTPUT": "0",
    "TUNE_DISABLE_SIGINT_HANDLER": "1",
    "RAY_DEDUP_LOGS": "0",
    "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "60",
    "TUNE_GLOBAL_CHECKPOINT_S": "3600",
}


# Ray starts its workers at niceness 15, so that they never slow its own processes. On a machine
# that also runs other work, that starves the trials, which are the whole point here: beside two
# busy processes a search ran 6.5 times slower (Ray's job server starts its drivers at 0 the same
# way). Only for the Ray instance drltune starts itself (a value the user exported wins); a
# cluster keeps its own setting.
LOCAL_WORKER_ENV = {"RAY_worker_niceness": "0"}


def quiet_ray_env() -> None:
    """Set RAY_QUIET_ENV (where the user has not) before Ray is imported."""
    for key, value in RAY_QUIET_ENV.items():
        os.environ.setdefault(key, value)


def auto_gpus(ray: Any, concurrent: int) -> float:
    """CUDA when present: the cluster's GPUs shared by the concurrent trials (Ray takes 4
    decimals)."""
    total = float(ray.cluster_resources().get("GPU", 0.0))
    return math.floor(min(1.0, total / concurrent) * 10_000) / 10_000 if total else 0.0


def check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when a HOST:PORT address has nothing listening (Ray retries
    long)."""
    host, sep, port = address.rpartition(":")
    if "://" in address or not sep or not port.isdigit():
        return  # "auto", ray://...: Ray resolves these itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=10).close()
    except OSError as exc:
        raise DrltuneError(
            f"--address {address}: no Ray cluster reachable there ({exc.strerror or exc})"
        ) from None


def joins_cluster(address: str | None) -> bool:
    """--address, or RAY_ADDRESS (set by `ray job submit`): a cluster, not a local Ray."""
    return bool(address or os.environ.get("RAY_ADDRESS"))


def init_ray(ray: Any, address: str | None, concurrent: int, cpus_per_task: float) -> None:
    """Local in-process Ray by default; `address` (or RAY_ADDRESS) joins a running cluster.
    Ray stays quiet."""
    kwargs: dict[str, Any] = {
        "log_to_driver": False,
        "logging_level": logging.ERROR,
        "configure_logging": True,
    }
    address = address or os.environ.get("RAY_ADDRESS")  # `ray job submit` sets RAY_ADDRESS
    if address:
        kwargs["address"] = address
        # Workers on a cluster do not inherit the driver's environment.
        passed = {k: os.environ[k] for k in (*RAY_QUIET_ENV, *FORWARDED_ENV) if k in os.environ}
        kwargs["runtime_env"] = {"env_vars": passed}
    else:
        # "local": always a fresh instance, never a cluster that someone started on this machine
        kwargs.update(
            address="local",
            include_dashboard=False,
            num_cpus=max(os.cpu_count() or 1, math.ceil(concurrent * cpus_per_task)),
            runtime_env={"env_vars": {k: os.getenv(k, v) for k, v in LOCAL_WORKER_ENV.items()}},
        )
    try:
        ray.init(**kwargs)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray instance"
        token = address and "RAY_AUTH_MODE" not in os.environ
        hint = (
            "; a cluster with token authentication needs RAY_AUTH_MODE=token and its token "
            "(RAY_AUTH_TOKEN or ~/.ray/auth_token)"
            if token
            else ""
        )
        raise DrltuneError(f"cannot start or join {where}: {first_line(exc)}{hint}") from None
    for name in ("ray", "ray.tune", "ray.train", "ray.data"):
        logging.getLogger(name).setLevel(logging.ERROR)
