"""What a Ray worker runs for one trial: a TrialConfig through the drltune Trainer, one report per epoch.

Each epoch goes to Ray as `{"epoch", "val_acc", "record"}` (the record as JSON, so that nested
or None values arrive unchanged). The last epoch is reported once, after the test evaluation,
together with the test metrics: that final result is how the driver knows a trial finished.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import traceback
from pathlib import Path
from typing import Any

from drltune.train.checkpoint import checkpoint_path, completed_epochs

FINAL_KEYS = ("best_val_acc", "best_epoch", "test_acc", "test_f1", "test_acc_audio", "test_acc_visual")


def epoch_result(record: dict[str, Any]) -> dict[str, Any]:
    return {"epoch": int(record["epoch"]), "val_acc": float(record["val_acc"]),
            "record": json.dumps(record, default=float)}


def run_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable; `config["trial"]` is the TrialConfig dict (threads included)."""
    from ray import tune

    from drltune.config import TrialConfig, resolve
    from drltune.train import Trainer

    resolved = resolve(TrialConfig.from_dict(config["trial"]))
    last = resolved.epochs - 1
    with tempfile.TemporaryDirectory(prefix="drltune-trial-") as local:
        resumed_from = _restore_checkpoint(tune.get_checkpoint(), Path(local))

        def report(epoch: int, record: dict[str, Any]) -> bool:
            if epoch < last:  # the trainer has just saved this epoch in `local`: Ray keeps a copy
                tune.report(epoch_result(record), checkpoint=tune.Checkpoint.from_directory(local))
            return False  # Ray stops a pruned trial itself

        try:
            result = Trainer(resolved).fit(report=report, checkpoint_dir=local)
        except Exception as exc:  # NaN loss, CUDA OOM, a data error: the trial FAILs with this message
            traceback.print_exc()  # the whole story in the worker's log
            tune.report({"error": f"{type(exc).__name__}: {exc}"[:2000], "val_acc": float("nan"),
                         "resumed_from_epoch": resumed_from})
            return
    final = epoch_result(result.history[-1])
    final.update({key: getattr(result, key) for key in FINAL_KEYS}, resumed_from_epoch=resumed_from)
    tune.report(final)


def _restore_checkpoint(checkpoint: Any, local: Path) -> int | None:
    """After a worker died (Ray retries the trial, --max-failures), put its last per-epoch checkpoint
    where the trainer resumes from; returns the last completed epoch it holds."""
    if checkpoint is None:
        return None
    with checkpoint.as_directory() as saved:
        shutil.copy2(checkpoint_path(saved), checkpoint_path(local))
    return completed_epochs(local) - 1
