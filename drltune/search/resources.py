"""Does one trial's request fit the Ray cluster? Checked once Ray is up, before Tune waits.

Ray Tune queues a trial whose resources no node has and waits for ever (an autoscaler might add
such a node). A trial runs on one node, so the request is compared with each alive node's own
resources (`ray.nodes()`), not with the cluster's sum. A local Ray (this machine only) cannot
grow: a request that does not fit is an error. A cluster joined with --address may have an
autoscaler (KubeRay, `ray up`) that adds the node later; Ray does not say for sure whether one
will, so there it is a warning and the search waits.
"""

from __future__ import annotations

import os
from typing import Any, Callable, Mapping

from drltune.errors import DrltuneError


def _amount(value: float, unit: str) -> str:
    return f"{value:g} {unit}" + ("" if value == 1 else "s")


def describe(resources: Mapping[str, float]) -> str:
    """`2 CPUs and 0 GPUs`."""
    return (
        f"{_amount(float(resources.get('CPU', 0)), 'CPU')} and "
        f"{_amount(float(resources.get('GPU', 0)), 'GPU')}"
    )


def node_resources(nodes: list[dict[str, Any]]) -> list[dict[str, float]]:
    """Each alive node's total resources, as `ray.nodes()` lists them."""
    return [dict(n.get("Resources") or {}) for n in nodes if n.get("Alive")]


def shortfall(request: Mapping[str, float], nodes: list[dict[str, float]]) -> str | None:
    """None when one node can hold `request` ({"CPU": c, "GPU": g}); else what the cluster has."""
    wanted = {k: v for k, v in request.items() if v > 0}
    if any(all(node.get(k, 0.0) + 1e-9 >= v for k, v in wanted.items()) for node in nodes):
        return None
    if not nodes:
        return "the Ray cluster has no alive node"
    if len(nodes) == 1:
        return f"Ray sees {describe(nodes[0])}"
    largest = {k: max(node.get(k, 0.0) for node in nodes) for k in ("CPU", "GPU")}
    total = {k: sum(node.get(k, 0.0) for node in nodes) for k in ("CPU", "GPU")}
    return (
        f"no node of the {len(nodes)} has it: at most {describe(largest)} on one node "
        f"({describe(total)} in all; a trial runs on one node)"
    )


def machine_cpus() -> int:
    """The CPUs this process may run on (its affinity: a container's or taskset's limit, not the
    host's)."""
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def check_local_cpus(cpus_per_trial: float, cpus: int | None = None) -> None:
    """Before a local Ray starts (it is given at least --concurrent x --cpus-per-trial CPUs, so that
    trials may share cores, and would accept any request): one trial cannot use more than the
    machine."""
    cpus = cpus if cpus is not None else machine_cpus()
    if cpus_per_trial > cpus:
        raise DrltuneError(
            f"--cpus-per-trial {cpus_per_trial:g}: this machine has {_amount(cpus, 'CPU')}; "
            f"ask for at most {cpus}"
        )


def check_fits(
    request: Mapping[str, float],
    nodes: list[dict[str, Any]],
    cluster: bool,
    warn: Callable[[str], None] = print,
) -> None:
    """Refuse (local Ray) or warn (a cluster that an autoscaler may grow) when no node holds one
    trial."""
    missing = shortfall(request, node_resources(nodes))
    if missing is None:
        return
    asked = f"each trial asks for {describe(request)}"
    hint = (
        " (pass --gpus-per-trial 0 to train on the CPU)"
        if request.get("GPU", 0) > 0 and not any(n.get("GPU", 0) for n in node_resources(nodes))
        else ""
    )
    if not cluster:
        raise DrltuneError(f"{asked}, but {missing}{hint}")
    warn(
        f"warning: {asked}, but {missing}; the trials wait until a node that holds one joins "
        f"(an autoscaler may add it; Ctrl-C to stop){hint}"
    )
