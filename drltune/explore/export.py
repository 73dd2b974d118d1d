"""Stored trials back to `TrialConfig` YAML that `drltune train --config` runs as is.

The stored config is the exact one the trial trained (epochs and seed included), so training
it again on CPU reproduces the trial's best_val_acc. The storage URL is not written: it may
carry a password.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune import record
from drltune.errors import DrltuneError
from drltune.resolve import trial_config
from drltune.search.objective import complete_primary, pareto_front, primary, study_objective


def select_trials(
    study: optuna.Study, top: int | None = None, numbers: tuple[int, ...] = (), by_race: bool = True
) -> list[FrozenTrial]:
    """The trials named by number, else the `top` best complete ones (1 when nothing is asked):
    in a raced study (racing.py) the raced ones first, by their mean over seeds, then the rest.
    A two-objective study's best are its Pareto front, best first objective first
    (`pareto_front`)."""
    trials = study.get_trials(deepcopy=False)
    if numbers:
        by_number = {t.number: t for t in trials}
        missing = [n for n in numbers if n not in by_number]
        if missing:
            raise DrltuneError(
                f"study {study.study_name!r} has no trial {missing[0]} (trials "
                f"0..{len(trials) - 1})"
            )
        return [by_number[n] for n in numbers]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        states = record.counts_text(record.state_counts(trials))
        raise DrltuneError(
            f"study {study.study_name!r} has no complete trial ({states}); pick one with --trial N"
        )
    if len(study.directions) > 1:
        return pareto_front(study)[: top or 1]
    reverse = study.direction == optuna.study.StudyDirection.MAXIMIZE
    ordered = sorted(
        complete, key=lambda t: (-complete_primary(t) if reverse else complete_primary(t), t.number)
    )
    if by_race:
        raced = [r["trial"] for r in record.raced_ranking(study)]
        ordered = sorted(
            ordered, key=lambda t: raced.index(t.number) if t.number in raced else len(raced)
        )
    return ordered[: top or 1]


def trial_meta(study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "study": study.study_name,
        "trial": trial.number,
        "state": trial.state.name,
        "value": primary(trial),
        "best_epoch": trial.user_attrs.get(record.BEST_EPOCH),
    }
    objective = study_objective(study)
    if objective.multi:
        meta["values"] = dict(zip(objective.names, trial.values)) if trial.values else None
        meta["pareto_front"] = trial.number in {t.number for t in pareto_front(study)}
    if trial.state != TrialState.COMPLETE:
        steps = trial.intermediate_values
        meta["epochs_run"] = trial.user_attrs.get(record.EPOCHS_RUN, len(steps))
        meta["best_val_acc_so_far"] = max(steps.values()) if steps else None
    for key in ("test_acc", record.RAY_TRIAL_ID):
        if key in trial.user_attrs:
            meta[key] = trial.user_attrs[key]
    return meta


def export_yaml(study: optuna.Study, trials: list[FrozenTrial]) -> str:
    """One YAML document per trial: a comment line, the `meta` mapping, then the TrialConfig
    keys."""
    docs = []
    for trial in trials:
        cfg, meta = trial_config(study, trial), trial_meta(study, trial)
        if trial.state == TrialState.COMPLETE:
            names = study_objective(study).names
            shown = (
                f"best_val_acc {trial.values[0]:.4f}"
                if names == ["val_acc"]
                else ", ".join(f"{n} {v:.4f}" for n, v in zip(names, trial.values))
            )
            head = (
                f"# study {study.study_name}, trial {trial.number}: {shown} "
                f"at epoch {meta['best_epoch']} of {cfg.epochs}"
            )
        else:
            head = (
                f"# study {study.study_name}, trial {trial.number} was {trial.state.name} after "
                f"{meta['epochs_run']} epoch(s); this config trains all {cfg.epochs}"
            )
        docs.append(
            f"{head}\n# run it: drltune train --config FILE  (meta is ignored by "
            f"train)\n{cfg.to_yaml(meta)}"
        )
    return "---\n".join(docs)
