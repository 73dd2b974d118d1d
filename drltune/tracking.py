"""The optional experiment tracker: one MLflow run per trained configuration (`--tracker mlflow`).

A run holds the config as params (`params.alpha`, `dataset_params.audio_snr` for the nested
ones), each epoch record's numbers as metrics with step = epoch, the final summary as
`final/<key>` metrics (FINAL_KEYS: they would clash with the per-epoch `test_acc` of
`selection: test`), and tags naming what it is (TAG_* below).

In a search the driver logs (the process that stores the trial in Optuna; workers need neither
MLflow nor a path to its store): epochs as they arrive, the outcome when the trial is told. A
search run is keyed by (study, the first trial number of the retry chain): a trial cut off and
retried, in this search or after a resume, continues its run instead of opening another, and
the epochs the run already holds are not logged twice. A tracker that fails (store locked, disk
full) warns once and stops tracking: the search's own record never waits on it.

mlflow-skinny is an extra (`pip install 'drltune[mlflow]'`); nothing here imports it before a
tracker is asked for.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable

from drltune.errors import DrltuneError, first_line
from drltune.record import FINAL_KEYS

TRACKERS = ("none", "mlflow")
DEFAULT_MLFLOW_URI = (
    "sqlite:///studies/mlflow.db"  # beside the default study database; needs no server
)
TRAIN_EXPERIMENT = (
    "drltune-train"  # `drltune train` runs; a search logs to an experiment named after its study
)
TAG_STUDY, TAG_TRIAL, TAG_OPTUNA_TRIAL = "drltune.study", "drltune.trial", "drltune.optuna_trial"
TAG_METHOD, TAG_DATASET, TAG_STATE, TAG_ERROR = (
    "drltune.method",
    "drltune.dataset",
    "drltune.state",
    "drltune.error",
)
FINAL_PREFIX = "final/"
# How a drltune outcome ends its MLflow run.
RUN_STATUS = {
    "complete": "FINISHED",
    "pruned": "KILLED",
    "failed": "FAILED",
    "interrupted": "KILLED",
}
INSTALL_HINT = "pip install 'drltune[mlflow]'"


def check_tracker(name: str) -> None:
    """Refuse a tracker that cannot run here, before any training starts."""
    if name == "mlflow":
        try:
            import mlflow  # noqa: F401
        except ImportError:
            raise DrltuneError(f"--tracker mlflow needs MLflow: {INSTALL_HINT}") from None


def tracking_uri(uri: str | None) -> str:
    """--tracker-uri, else $MLFLOW_TRACKING_URI, else DEFAULT_MLFLOW_URI (its folder is created)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_MLFLOW_URI
    if uri.startswith("sqlite:///"):
        path = uri[len("sqlite:///") :]
        if path and path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return uri


def config_params(config: dict[str, Any]) -> dict[str, str]:
    """A TrialConfig dict as MLflow params: nested mappings flattened as `params.alpha`; unset keys
    left out."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": str(v) for k, v in value.items()})
        elif value is not None:
            out[key] = str(value)
    return out


def record_metrics(record: dict[str, Any]) -> dict[str, float]:
    """The numbers of one epoch record (bools as 0/1; None and text left out)."""
    return {k: float(v) for k, v in record.items() if isinstance(v, (int, float)) and k != "epoch"}


class MlflowTracker:
    """Writes runs through MlflowClient (no global active run: several trials log at once)."""

    def __init__(
        self, uri: str | None, experiment: str, warn: Callable[[str], None] = print
    ) -> None:
        from mlflow.tracking import MlflowClient

        for noisy in (
            "mlflow",
            "alembic",
        ):  # "Creating initial MLflow database tables..." on every new store
            logging.getLogger(noisy).setLevel(logging.WARNING)
        self.uri = tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=self.uri)
        self.warn = warn
        self.failed = False
        self._lock = threading.Lock()
        self._runs: dict[Any, tuple[str, int]] = {}  # key -> (run id, the last epoch it holds)
        try:
            found = self.client.get_experiment_by_name(experiment)
            self.experiment_id = (
                found.experiment_id if found else self.client.create_experiment(experiment)
            )
        except Exception as exc:
            raise DrltuneError(
                f"--tracker mlflow: cannot open {self.uri}: {first_line(exc)}"
            ) from None

    # ---- guarded calls --------------------------------------------------------------------------
    def _guard(self, action: Callable[[], Any]) -> Any:
        """Run one MLflow call; a failure warns once and turns the tracker off."""
        if self.failed:
            return None
        try:
            with self._lock:
                return action()
        except Exception as exc:
            self.failed = True
            self.warn(f"warning: MLflow tracking stopped ({self.uri}): {first_line(exc)}")
            return None

    def _log(
        self,
        run_id: str,
        metrics: dict[str, float] | None = None,
        step: int = 0,
        params: dict[str, str] | None = None,
        tags: dict[str, str] | None = None,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        self.client.log_batch(
            run_id,
            metrics=[Metric(k, v, now, step) for k, v in (metrics or {}).items()],
            params=[Param(k, v) for k, v in (params or {}).items()],
            tags=[RunTag(k, v) for k, v in (tags or {}).items()],
        )

    # ---- a run --------------------------------------------------------------------------------
    def open_run(
        self,
        key: Any,
        config: dict[str, Any],
        tags: dict[str, str],
        find: dict[str, str] | None = None,
        name: str | None = None,
    ) -> None:
        """Start the run for `key`, or reopen the one whose tags match `find` (a retried trial)."""

        def action() -> None:
            run = None
            if find:
                where = " and ".join(f"tags.`{k}` = '{v}'" for k, v in find.items())
                found = self.client.search_runs(
                    [self.experiment_id], filter_string=where, max_results=1
                )
                run = found[0] if found else None
            if run is None:
                run = self.client.create_run(self.experiment_id, tags=tags, run_name=name)
                self._log(run.info.run_id, params=config_params(config))
                last = -1
            else:
                self.client.update_run(run.info.run_id, status="RUNNING")
                self._log(run.info.run_id, tags=tags)
                history = self.client.get_metric_history(run.info.run_id, "val_acc")
                last = max((m.step for m in history), default=-1)
            self._runs[key] = (run.info.run_id, last)

        self._guard(action)

    def has_run(self, key: Any) -> bool:
        return key in self._runs

    def log_epochs(self, key: Any, records: list[dict[str, Any]]) -> None:
        """Per-epoch metrics, step = epoch; epochs the run already holds are skipped."""
        if key not in self._runs:
            return

        def action() -> None:
            run_id, last = self._runs[key]
            for rec in records:
                if int(rec["epoch"]) > last:
                    self._log(run_id, record_metrics(rec), step=int(rec["epoch"]))
                    last = int(rec["epoch"])
            self._runs[key] = (run_id, last)

        self._guard(action)

    def finish(
        self, key: Any, state: str, summary: dict[str, Any] | None = None, error: str | None = None
    ) -> None:
        """The final summary and the outcome (`state`: complete, pruned, failed, interrupted);
        closes the run."""
        if key not in self._runs:
            return
        run_id, _ = self._runs.pop(key)

        def action() -> None:
            finals = {
                f"{FINAL_PREFIX}{k}": float(v)
                for k, v in (summary or {}).items()
                if k in FINAL_KEYS and isinstance(v, (int, float))
            }
            tags = {TAG_STATE: state, **({TAG_ERROR: error[:5000]} if error else {})}
            self._log(run_id, finals, params=None, tags=tags)
            self.client.set_terminated(run_id, status=RUN_STATUS.get(state, "FINISHED"))

        self._guard(action)
