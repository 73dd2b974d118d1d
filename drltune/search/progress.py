"""One readable line per finished trial (instead of Ray's tables), and the closing summary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune.explore.summary import prose
from drltune.record import raced_ranking, state_counts
from drltune.search.choice import choice_line
from drltune.search.display import SearchBar, TimeLeft
from drltune.search.objective import Objective, complete_primary, pareto_front, study_objective
from drltune.search.study import counted


@dataclass(frozen=True)
class Outcome:
    """What happened to a trial, for the progress display."""

    number: int
    state: str  # "complete", "pruned", "failed", "interrupted"
    epochs: int
    value: float | None  # the first objective's (for a pruned trial: its best so far)
    detail: str = ""
    values: tuple[float, ...] = ()  # a complete trial's objective values


def params_text(params: dict) -> str:
    return " ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items()
    )


def best_complete(study: optuna.Study) -> FrozenTrial | None:
    """The best complete trial on the first objective (of a two-objective study: the front's
    first)."""
    front = pareto_front(study)
    return front[0] if front else None


def values_text(objective: Objective, values: tuple[float, ...] | list[float]) -> str:
    """`val_acc 0.8123, modality_gap 0.0500`."""
    return ", ".join(f"{name} {value:.4f}" for name, value in zip(objective.names, values))


class Progress:
    """After each trial: `#N <outcome>`, then
    `[finished/--trials] complete, pruned, failed, running`, and the best trial's parameters only
    when the best changed."""

    def __init__(
        self,
        study: optuna.Study,
        total: int,
        echo: Callable[[str], None],
        running: Callable[[], int],
        bar: SearchBar | None = None,
        time_left: TimeLeft | None = None,
    ) -> None:
        self.study, self.total, self.echo, self.running = study, total, echo, running
        self.bar, self.time_left = (
            bar,
            time_left,
        )  # the terminal's bar and the estimate, kept up to date
        self.objective = study_objective(study)
        self.best_number: int | None = None
        self.front: list[int] = []

    def __call__(self, outcome: Outcome) -> None:
        name = self.objective.first.name
        reached = (
            f"best val_acc {outcome.value or 0:.4f}"
            if self.objective.names == ["val_acc"]
            else values_text(self.objective, outcome.values or (outcome.value or 0.0,))
        )  # at the selected epoch
        what = {
            "complete": f"complete after {outcome.epochs} epochs, {reached}",
            "pruned": (
                f"pruned after {outcome.epochs} epochs (best {name} {outcome.value or 0:.4f})"
            ),
            "failed": f"FAILED: {outcome.detail}",
            "interrupted": "interrupted (queued for the next run)",
        }[outcome.state]
        self.echo(f"#{outcome.number} {what}\n    {self.status()}")
        done = counted(self.study)
        if self.time_left is not None:
            self.time_left.done = done
        if self.bar is not None:
            self.bar.finished(done, self.best_text())

    def best_text(self) -> str:
        """`best 0.8123 (#4)`, or `Pareto front #4, #7` (two objectives); `` before the first."""
        if self.objective.multi:
            front = pareto_front(self.study)
            return f"Pareto front {', '.join(f'#{t.number}' for t in front)}" if front else ""
        best = best_complete(self.study)
        return (
            f"best {self.objective.first.name} {best.values[0]:.4f} (#{best.number})"
            if best
            else ""
        )

    def status(self) -> str:
        n = state_counts(
            self.study.get_trials(deepcopy=False)
        )  # the count studies and explore show
        line = (
            f"[{counted(self.study)}/{self.total}] complete {n['complete']}, pruned {n['pruned']}, "
            # running: this driver's (others' are RUNNING too)
            f"failed {n['failed']}, running {self.running()}"
            + "".join(
                f", {key.replace('_', ' ')} {n[key]}"
                for key in ("interrupted", "not_run", "queued")
                if n[key]
            )
        )
        if self.objective.multi:
            front = [t.number for t in pareto_front(self.study)]
            if not front:
                return line
            changed, self.front = front != self.front, front
            return (
                line
                + (
                    f" | {'new ' if changed else ''}Pareto front "
                    f"({' vs '.join(self.objective.names)}): "
                )
                + ", ".join(f"#{n}" for n in front)
            )
        best = best_complete(self.study)
        if best is None:
            return line
        if best.number != self.best_number:
            self.best_number = best.number
            return line + f" | new best {best.value:.4f}: #{best.number} {params_text(best.params)}"
        return line + f" | best {best.value:.4f} (#{best.number})"


def summary_lines(study: optuna.Study, top: int = 5) -> list[str]:
    """The best complete trials: value, test accuracy, best epoch and configuration (two objectives:
    the Pareto front)."""
    objective = study_objective(study)
    if objective.multi:
        return front_lines(study, objective)
    if objective.names != ["val_acc"]:
        return _single_lines(study, objective, top)
    trials = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
        key=complete_primary,
        reverse=True,
    )[:top]
    if not trials:
        return ["no complete trial yet"]
    raced = {r["trial"]: r for r in raced_ranking(study)}
    if raced:  # the raced trials first, by their mean over seeds
        trials = sorted(
            trials, key=lambda t: list(raced).index(t.number) if t.number in raced else len(raced)
        )
    lines = [
        f"best {len(trials)} configurations of study {study.study_name!r} (value = best val_acc"
        + ("; raced: mean over seeds" if raced else "")
        + "):"
    ]
    for rank, t in enumerate(trials, 1):
        test = t.user_attrs.get("test_acc")
        mean = (
            f"  mean val_acc {raced[t.number]['mean_val_acc']:.4f} over {raced[t.number]['seeds']} "
            "seeds"
            if t.number in raced
            else ""
        )
        lines.append(
            f"{rank:>2}. #{t.number:<4} val_acc {t.value:.4f}{mean}  test_acc "
            f"{'n/a' if test is None else f'{test:.4f}'}  best epoch "
            f"{t.user_attrs.get('best_epoch')}  {params_text(t.params)}"
        )
    line = choice_line(study)
    return lines + (prose(line) if line else [])


def _single_lines(study: optuna.Study, objective: Objective, top: int) -> list[str]:
    """The best complete trials of a study searched for another single metric than val_acc."""
    trials = sorted(
        study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
        key=lambda t: (-t.values[0], t.number),
    )[:top]  # the first objective is maximised
    if not trials:
        return ["no complete trial yet"]
    name = objective.first.name
    lines = [
        f"best {len(trials)} configurations of study {study.study_name!r} (value = {name} at the "
        "selected epoch):"
    ]
    for rank, t in enumerate(trials, 1):
        lines.append(
            f"{rank:>2}. #{t.number:<4} {name} {t.values[0]:.4f}  val_acc "
            f"{_fmt(_at_best(t, 'val_acc'))}  test_acc {_fmt(t.user_attrs.get('test_acc'))}  "
            f"best epoch {t.user_attrs.get('best_epoch')}  {params_text(t.params)}"
        )
    return lines


def front_lines(study: optuna.Study, objective: Objective) -> list[str]:
    """A two-objective study's Pareto front, best first objective first."""
    front = pareto_front(study)
    if not front:
        return ["no complete trial yet"]
    lines = [
        f"Pareto front of study {study.study_name!r}: {len(front)} trial(s), none beaten on both "
        f"{objective.describe()} (export one with --trial N; the default is the first row):"
    ]
    for t in front:
        lines.append(
            f"  #{t.number:<4} {values_text(objective, t.values)}  test_acc "
            f"{_fmt(t.user_attrs.get('test_acc'))}  best epoch {t.user_attrs.get('best_epoch')}  "
            f"{params_text(t.params)}"
        )
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _at_best(trial: FrozenTrial, key: str) -> float | None:
    best = trial.user_attrs.get("best_epoch")
    return next(
        (r.get(key) for r in trial.user_attrs.get("history") or () if r.get("epoch") == best), None
    )


def next_steps(study_name: str, storage_url: str) -> list[str]:
    """The commands a user runs after a search, with this study and storage (they work from any
    folder)."""
    import shlex

    storage = f" --storage {shlex.quote(storage_url)}"
    study = f" --study {shlex.quote(study_name)}"
    steps = [
        (
            f"drltune explore{study}{storage}",
            "tables + HTML report: best per method, noise, curves",
        ),
        (
            f"drltune export{study}{storage} --top 3 -o best.yaml",
            "the best configs as TrialConfig YAML",
        ),
        ("drltune train --config best.yaml --seeds 3", "re-train them on 3 seeds: test mean ± std"),
        (f"drltune dashboard{storage}", "optuna-dashboard: trial notes, curves, study figures"),
    ]
    width = max(len(command) for command, _ in steps)
    return ["next:", *(f"  {command:<{width}}  # {why}" for command, why in steps)]
