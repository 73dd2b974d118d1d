"""What a Ray worker runs for one trial: a TrialConfig through the drltune Trainer, one report per
epoch.

Each epoch goes to Ray as `{"epoch", "val_acc", "record", "node_id", "node_ip"}` (the record as
JSON, so that nested or None values arrive unchanged; the node says where the trial runs). The
last epoch is reported once, after the test evaluation, together with the test metrics: that final
result is how the driver knows a trial finished. A trial resumed from its checkpoint trains only
the epochs after it; its first result also carries the restored ones (`restored`, a JSON list of
records), so that the driver's record, the pruner and the re-init marks cover the whole trial.

Checkpoints do not go through Ray: `config["checkpoint"]` names the trial's folder in the search's
CheckpointStore (see checkpoints.py), which a retry of the trial, on any node, resumes from.
"""

from __future__ import annotations

import json
import tempfile
import traceback
from pathlib import Path
from typing import Any

from drltune.record import FINAL_KEYS, RESUMED_FROM_EPOCH

RESTORED = "restored"  # in a resumed trial's first result: the epoch records its checkpoint held


def epoch_result(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "epoch": int(record["epoch"]),
        "val_acc": float(record["val_acc"]),
        "record": json.dumps(record, default=float),
    }


def _node() -> dict[str, str]:
    import ray

    try:
        return {
            "node_id": ray.get_runtime_context().get_node_id(),
            "node_ip": ray.util.get_node_ip_address(),
        }
    except Exception:  # outside Ray (unit tests)
        return {}


def _gpu_share() -> float:
    """The GPU share Ray gave this trial (0 outside Ray or without a GPU)."""
    import ray

    try:
        return float(ray.get_runtime_context().get_assigned_resources().get("GPU", 0.0))
    except Exception:  # outside Ray (unit tests)
        return 0.0


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; `config["trial"]` is the TrialConfig dict (threads included) and
    `config["checkpoint"]` (root, key, every, owner: the study's id) where its checkpoints live, or
    None for none. Ray reuses the worker for the next trial: what the trial before cached on the GPU
    is given back first (here, not at that trial's end: Ray gives a finished trial 2 s before it
    calls the worker not reusable and starts another)."""
    from drltune.train import cuda_settings

    cuda_settings.release_cached_memory()  # nothing on a CPU, or in a fresh worker
    _run_trial(config)


def _run_trial(config: dict[str, Any]) -> None:
    from ray import tune

    from drltune.config import TrialConfig
    from drltune.resolve import resolve
    from drltune.search.checkpoints import CheckpointStore
    from drltune.search.gpu_plan import CONTEXT_BYTES, check_device_for_ray
    from drltune.train import Trainer, cuda_settings
    from drltune.train.trainer import pick_device

    resolved = resolve(TrialConfig.from_dict(config["trial"]))
    cuda_settings.prepare_process(
        bool(resolved.deterministic)
    )  # before this worker's first CUDA use
    ckpt: dict[str, Any] = config.get("checkpoint") or {}
    store = CheckpointStore(ckpt["root"]) if ckpt else None
    node = _node()
    trainer: Trainer | None = None
    sent: list[int] = []  # the epochs reported so far

    def send(result: dict[str, Any]) -> None:
        """Report to Ray; the first result of a resumed trial also carries the restored epochs."""
        earlier = (
            []
            if sent or trainer is None
            else [r for r in trainer.restored if r["epoch"] < result["epoch"]]
        )
        sent.append(result["epoch"])
        tune.report({**result, RESTORED: json.dumps(earlier, default=float)} if earlier else result)

    with tempfile.TemporaryDirectory(prefix="drltune-trial-") as tmp:
        folder = None
        if store is not None:
            folder = store.path(ckpt["key"]) if store.direct else Path(tmp)
            if not store.direct:
                store.download(ckpt["key"], folder)
        try:
            check_device_for_ray(resolved.device)
            cuda_settings.cap_memory(_gpu_share(), pick_device(resolved.device), CONTEXT_BYTES)
            trainer = Trainer(resolved)

            def report(epoch: int, record: dict[str, Any]) -> bool:
                saved = trainer.last_checkpoint
                if saved is not None:
                    assert (
                        store is not None and folder is not None
                    )  # checkpoints go to the store's folder only
                    if not store.direct:
                        store.upload(ckpt["key"], folder, saved.files)
                    record = {
                        **record,
                        "checkpoint_s": saved.seconds,
                    }  # kept in the trial's history
                result = {**epoch_result(record), **node}
                if epoch < resolved.epochs - 1:
                    send(result)
                return False  # Ray stops a pruned trial itself

            result = trainer.fit(
                report=report,
                checkpoint_dir=folder,
                checkpoint_every=ckpt["every"] if ckpt else 0,
                checkpoint_owner=ckpt.get("owner") if ckpt else None,
            )
        except (
            Exception
        ) as exc:  # NaN loss, CUDA OOM, a data error: the trial FAILs with this message
            traceback.print_exc()  # the whole story in the worker's log
            tune.report(
                {
                    "error": f"{type(exc).__name__}: {exc}"[:2000],
                    "val_acc": float("nan"),
                    RESUMED_FROM_EPOCH: _resumed(trainer),
                    **node,
                }
            )
            return
    final = {**epoch_result(result.history[-1]), **node}
    final.update(
        {key: getattr(result, key) for key in FINAL_KEYS}, **{RESUMED_FROM_EPOCH: _resumed(trainer)}
    )
    send(final)


def _resumed(trainer: Any) -> int | None:
    """The last epoch a checkpoint held when this run started (None: it started from epoch 0)."""
    return trainer.restored[-1]["epoch"] if trainer is not None and trainer.restored else None
