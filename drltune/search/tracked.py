"""A search's trials in the experiment tracker: the bridge calls `epochs` and `end` for each trial.

Keyed by the first trial number of the retry chain (Optuna's retry of a cut-off trial is a new
trial resuming the old one's checkpoint): the chain is one run, reopened by its tags after a
resume, so no trial is logged as two runs and no epoch twice.
"""

from __future__ import annotations

from typing import Any

from drltune import record
from drltune.tracking import (
    TAG_DATASET,
    TAG_METHOD,
    TAG_OPTUNA_TRIAL,
    TAG_STATE,
    TAG_STUDY,
    TAG_TRIAL,
    MlflowTracker,
)

LiveTrial = Any  # drltune.search.bridge.LiveTrial (the bridge imports this module)


class SearchTracking:
    def __init__(self, tracker: MlflowTracker, study_name: str) -> None:
        self.tracker, self.study_name = tracker, study_name

    def _open(self, live: LiveTrial) -> None:
        if self.tracker.has_run(live.root):
            return
        cfg = live.config
        chain = {TAG_STUDY: self.study_name, TAG_TRIAL: str(live.root)}
        tags = {
            **chain,
            TAG_OPTUNA_TRIAL: str(live.trial.number),
            TAG_METHOD: cfg.method,
            TAG_DATASET: cfg.dataset,
            TAG_STATE: "running",
        }
        self.tracker.open_run(
            live.root, cfg.to_dict(), tags, find=chain, name=f"{self.study_name}-trial{live.root}"
        )

    def epochs(self, live: LiveTrial, records: list[dict[str, Any]]) -> None:
        self._open(live)
        self.tracker.log_epochs(live.root, records)

    def end(self, live: LiveTrial, state: str, attrs: dict[str, Any]) -> None:
        """The outcome (complete, pruned, failed, interrupted) closes the run; a retry reopens
        it."""
        if state == "failed":
            self._open(live)  # a trial that failed before its first epoch still gets its run
        self.tracker.log_epochs(live.root, attrs.get(record.HISTORY) or [])
        self.tracker.finish(live.root, state, attrs, attrs.get(record.ERROR))
