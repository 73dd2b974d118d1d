"""What a search optimises (`--objective`): one metric, or two (a Pareto front).

Every metric is read from the trial's *selected* epoch (the trainer keeps the weights of its best
val_acc epoch, and tests those): the values describe the model the trial delivers, so
`val_acc,modality_gap` trades that model's accuracy against how unevenly its two modalities
learned. Per epoch, the first metric is what a single-objective study reports to its pruner.

A two-objective study runs unpruned: Optuna's `Trial.report`/`should_prune` refuse
multi-objective studies, and pruning on the first objective alone would cut the low-gap,
lower-accuracy trials that the Pareto front is there to keep.

Stored on the study: Optuna's metric names (`study.set_metric_names`, which optuna-dashboard
shows, with its Pareto-front plot for two) and the `objective` user attribute (the names, in
order; a study without it is a val_acc study, as every study before `--objective`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from drltune import record
from drltune.errors import DrltuneError


@dataclass(frozen=True)
class Metric:
    name: str
    maximize: bool
    of_epoch: Callable[[dict[str, Any]], float]  # the value in one epoch record of the trainer
    meaning: str


def _gap(epoch: dict[str, Any]) -> float:
    return abs(float(epoch["val_acc_audio"]) - float(epoch["val_acc_visual"]))


METRICS = {
    m.name: m
    for m in (
        Metric("val_acc", True, lambda r: float(r["val_acc"]), "validation accuracy"),
        Metric("val_f1", True, lambda r: float(r["val_f1"]), "validation macro-F1"),
        Metric("modality_gap", False, _gap, "|audio-only - visual-only| validation accuracy"),
    )
}
FIRST = (
    "val_acc",
    "val_f1",
)  # a search led by the gap alone would reward a model that learns nothing
DEFAULT = "val_acc"


@dataclass(frozen=True)
class Objective:
    metrics: tuple[Metric, ...]

    @property
    def names(self) -> list[str]:
        return [m.name for m in self.metrics]

    @property
    def text(self) -> str:
        return ",".join(self.names)

    @property
    def directions(self) -> list[StudyDirection]:
        return [
            StudyDirection.MAXIMIZE if m.maximize else StudyDirection.MINIMIZE for m in self.metrics
        ]

    @property
    def multi(self) -> bool:
        return len(self.metrics) > 1

    @property
    def first(self) -> Metric:
        return self.metrics[0]

    def values(self, history: list[dict[str, Any]], best_epoch: int) -> list[float]:
        """The trial's values, at its selected epoch."""
        chosen = next((r for r in history if int(r["epoch"]) == int(best_epoch)), history[-1])
        return [m.of_epoch(chosen) for m in self.metrics]

    def describe(self) -> str:
        """`val_acc (maximised) and modality_gap (minimised)`."""
        return " and ".join(
            f"{m.name} ({'maximised' if m.maximize else 'minimised'})" for m in self.metrics
        )


def parse_objective(text: str) -> Objective:
    """`val_acc`, `val_f1`, or two names joined by a comma (`val_acc,modality_gap`)."""
    names = [n.strip() for n in text.split(",")]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise DrltuneError(
            f"--objective {text}: unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}"
        )
    if len(names) > 2 or len(set(names)) != len(names):
        raise DrltuneError(
            f"--objective {text}: one metric, or two different ones (e.g. val_acc,modality_gap)"
        )
    if names[0] not in FIRST:
        raise DrltuneError(
            f"--objective {text}: the first metric must be {' or '.join(FIRST)} "
            f"(a search on {names[0]} alone rewards a model that learns nothing)"
        )
    return Objective(tuple(METRICS[n] for n in names))


def study_objective(study: optuna.Study) -> Objective:
    """The objective a study was searched for (val_acc for studies from before --objective)."""
    stored = study.user_attrs.get(record.OBJECTIVE)
    return parse_objective(",".join(stored) if stored else DEFAULT)


def primary(trial: FrozenTrial) -> float | None:
    """The trial's first objective value (None when it has none), for single- and multi-objective
    studies."""
    return float(trial.values[0]) if trial.values else None


def complete_primary(trial: FrozenTrial) -> float:
    """`primary` of a COMPLETE trial, which always has its values (Optuna types them Optional)."""
    value = primary(trial)
    assert value is not None, f"trial {trial.number} ({trial.state.name}) has no value"
    return value


def pareto_front(study: optuna.Study) -> list[FrozenTrial]:
    """The complete trials that no other complete trial beats on every objective, by first
    objective. A single-objective study's front is its best trial."""
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    front = study.best_trials
    objective = study_objective(study)
    sign = -1.0 if objective.first.maximize else 1.0
    return sorted(front, key=lambda t: (sign * t.values[0], t.number))
