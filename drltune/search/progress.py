"""One readable line per finished trial (instead of Ray's tables), and the closing summary."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune.record import raced_ranking, state_counts
from drltune.search.choice import choice_line
from drltune.search.study import counted


@dataclass(frozen=True)
class Outcome:
    """What happened to a trial, for the progress display."""

    number: int
    state: str  # "complete", "pruned", "failed", "interrupted"
    epochs: int
    value: float | None
    detail: str = ""


def params_text(params: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def best_complete(study: optuna.Study) -> FrozenTrial | None:
    trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return max(trials, key=lambda t: t.value) if trials else None


class Progress:
    """After each trial: `#N <outcome>`, then `[finished/--trials] complete, pruned, failed, running`,
    and the best trial's parameters only when the best changed."""

    def __init__(self, study: optuna.Study, total: int, echo: Callable[[str], None],
                 running: Callable[[], int]) -> None:
        self.study, self.total, self.echo, self.running = study, total, echo, running
        self.best_number: int | None = None

    def __call__(self, outcome: Outcome) -> None:
        what = {"complete": f"complete after {outcome.epochs} epochs, best val_acc {outcome.value or 0:.4f}",
                "pruned": f"pruned after {outcome.epochs} epochs (best val_acc {outcome.value or 0:.4f})",
                "failed": f"FAILED: {outcome.detail}",
                "interrupted": "interrupted (queued for the next run)"}[outcome.state]
        self.echo(f"#{outcome.number} {what}\n    {self.status()}")

    def status(self) -> str:
        n = state_counts(self.study.get_trials(deepcopy=False))  # the count studies and explore show
        line = (f"[{counted(self.study)}/{self.total}] complete {n['complete']}, pruned {n['pruned']}, "
                f"failed {n['failed']}, running {self.running()}"  # this driver's (others' are RUNNING too)
                + "".join(f", {key.replace('_', ' ')} {n[key]}" for key in ("interrupted", "not_run", "queued")
                          if n[key]))
        best = best_complete(self.study)
        if best is None:
            return line
        if best.number != self.best_number:
            self.best_number = best.number
            return line + f" | new best {best.value:.4f}: #{best.number} {params_text(best.params)}"
        return line + f" | best {best.value:.4f} (#{best.number})"


def summary_lines(study: optuna.Study, top: int = 5) -> list[str]:
    """The best complete trials: value, test accuracy, best epoch and configuration."""
    trials = sorted(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)),
                    key=lambda t: t.value, reverse=True)[:top]
    if not trials:
        return ["no complete trial yet"]
    raced = {r["trial"]: r for r in raced_ranking(study)}
    if raced:  # the raced trials first, by their mean over seeds
        trials = sorted(trials, key=lambda t: list(raced).index(t.number) if t.number in raced else len(raced))
    lines = [f"best {len(trials)} configurations of study {study.study_name!r} (value = best val_acc"
             + ("; raced: mean over seeds" if raced else "") + "):"]
    for rank, t in enumerate(trials, 1):
        test = t.user_attrs.get("test_acc")
        mean = f"  mean val_acc {raced[t.number]['mean_val_acc']:.4f} over {raced[t.number]['seeds']} seeds" \
            if t.number in raced else ""
        lines.append(f"{rank:>2}. #{t.number:<4} val_acc {t.value:.4f}{mean}  test_acc "
                     f"{'n/a' if test is None else f'{test:.4f}'}  best epoch {t.user_attrs.get('best_epoch')}  "
                     f"{params_text(t.params)}")
    line = choice_line(study)
    return lines + ([line] if line else [])


def next_steps(study_name: str, storage_url: str) -> list[str]:
    """The commands a user runs after a search, with this study and storage (they work from any folder)."""
    import shlex

    storage = f" --storage {shlex.quote(storage_url)}"
    study = f" --study {shlex.quote(study_name)}"
    steps = [(f"drltune explore{study}{storage}", "tables + HTML report: best per method, noise, curves"),
             (f"drltune export{study}{storage} --top 3 -o best.yaml", "the best configs as TrialConfig YAML"),
             ("drltune train --config best.yaml --seeds 3", "re-train them on 3 seeds: test mean ± std"),
             (f"drltune dashboard{storage}", "optuna-dashboard: trial notes, curves, study figures")]
    width = max(len(command) for command, _ in steps)
    return ["next:", *(f"  {command:<{width}}  # {why}" for command, why in steps)]
