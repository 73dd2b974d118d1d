"""`drltune studies`: each study of a storage in two lines, two studies side by side, deleting one.

Counts come from record.state_counts (what explore and the search's progress line show); the
best is the best COMPLETE trial, as explore and export pick it.
"""

from __future__ import annotations

import textwrap
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune import record
from drltune.errors import DrltuneError
from drltune.search.optuna_private import study_id_of, trial_id_of
from drltune.search.storage import ResilientRDBStorage, shown

WIDTH = 100  # terminal lines stay within this many columns
CELL = 40  # --compare: characters per study column


def best_trial(
    trials: list[FrozenTrial], direction: optuna.study.StudyDirection
) -> FrozenTrial | None:
    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        return None
    pick = max if direction == optuna.study.StudyDirection.MAXIMIZE else min
    return pick(complete, key=lambda t: (t.value, -t.number))


def _started(trials: list[FrozenTrial]) -> str:
    starts = [t.datetime_start for t in trials if t.datetime_start is not None]
    return min(starts).strftime("%Y-%m-%d %H:%M") if starts else "-"


def overview(storage: optuna.storages.BaseStorage) -> list[dict[str, Any]]:
    """Each study: name, dataset, started, counts, and its best trial's value, number, method,
    fusion."""
    rows = []
    for frozen in sorted(storage.get_all_studies(), key=lambda s: s.study_name):
        trials = storage.get_all_trials(study_id_of(frozen), deepcopy=False)
        best = best_trial(trials, frozen.directions[0]) if len(frozen.directions) == 1 else None
        rows.append(
            {
                "study": frozen.study_name,
                "dataset": frozen.user_attrs.get(record.DATASET),
                "started": _started(trials),
                "trials": len(trials),
                "counts": record.state_counts(trials),
                "best": None
                if best is None
                else {
                    "value": best.value,
                    "trial": best.number,
                    "method": record.trial_method(best),
                    "fusion": record.trial_fusion(best),
                    "test_acc": best.user_attrs.get("test_acc"),
                },
            }
        )
    return rows


def fit(text: str, width: int = WIDTH) -> str:
    """Cut a line to `width` columns, saying so with a trailing `…`."""
    return text if len(text) <= width else text[: width - 1] + "…"


def overview_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for row in rows:
        dataset = f"  dataset {row['dataset']}" if row["dataset"] else ""
        lines.append(
            fit(f"{row['study']}  {row['trials']} trials{dataset}  started {row['started']}")
        )
        best = row["best"]
        best_text = (
            "no complete trial"
            if best is None
            else f"best {best['value']:.4f} (#{best['trial']} {best['method']}/{best['fusion']})"
        )
        lines += textwrap.wrap(
            f"{best_text}; {record.counts_text(row['counts'])}",
            WIDTH,
            initial_indent="  ",
            subsequent_indent="    ",
            break_long_words=False,
        )
    return lines


def _facts(study: optuna.Study) -> dict[str, str]:
    """What --compare lines up, row name -> text."""
    trials = study.get_trials(deepcopy=False)
    best = best_trial(trials, study.direction) if len(study.directions) == 1 else None
    facts = {
        "dataset": str(study.user_attrs.get(record.DATASET) or "-"),
        "started": _started(trials),
        "trials": f"{len(trials)} ({record.counts_text(record.state_counts(trials))})",
        "max epochs": str(study.user_attrs.get(record.MAX_EPOCHS, "-")),
        "sampler / pruner": (
            f"{study.user_attrs.get(record.SAMPLER, '-')} / "
            f"{study.user_attrs.get(record.PRUNER, '-')}"
        ),
    }
    if best is not None:
        test = best.user_attrs.get("test_acc")
        facts.update(
            {
                "best val_acc": f"{best.value:.4f} (#{best.number})",
                "its test_acc": "-" if test is None else f"{test:.4f}",
                "its method / fusion": f"{record.trial_method(best)} / {record.trial_fusion(best)}",
            }
        )
        facts.update(
            {
                f"  {k}": (f"{v:.4g}" if isinstance(v, float) else str(v))
                for k, v in best.params.items()
                if k not in ("method", "fusion")
            }
        )
    by_method: dict[str, float] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and t.value is not None:
            method = record.trial_method(t)
            by_method[method] = max(by_method.get(method, t.value), t.value)
    facts.update({f"best {m}": f"{v:.4f}" for m, v in sorted(by_method.items())})
    return facts


def compare_lines(a: optuna.Study, b: optuna.Study) -> list[str]:
    """Two studies side by side, one row per fact (a row only one study has shows `-` for the
    other)."""
    fa, fb = _facts(a), _facts(b)
    keys = list(fa) + [k for k in fb if k not in fa]
    label = max(len(k) for k in keys) + 2
    cell = min(CELL, (WIDTH - label - 2) // 2)

    def row(key: str, left: str, right: str) -> str:
        return fit(f"{key:<{label}}{fit(left, cell):<{cell}}  {fit(right, cell)}")

    return [
        row("", a.study_name, b.study_name),
        *(row(k, fa.get(k, "-"), fb.get(k, "-")) for k in keys),
    ]


def live_trials(storage: optuna.storages.BaseStorage, study_id: int) -> int:
    """RUNNING trials whose driver still beats (a search is running on the study). Without
    heartbeats (a journal file, a study from another tool) every RUNNING trial counts."""
    running = {
        trial_id_of(t)
        for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
    }
    if running and isinstance(storage, ResilientRDBStorage) and storage.heartbeat_interval:
        running -= set(storage._get_stale_trial_ids(study_id))
        running -= set(storage.running_trial_ids_without_heartbeat(study_id))
    return len(running)


def delete(storage: optuna.storages.BaseStorage, storage_text: str, name: str) -> int:
    """Delete the study (Optuna's delete_study); refused while a search runs on it. Returns its
    trial count."""
    names = {s.study_name: s for s in storage.get_all_studies()}
    if name not in names:
        raise DrltuneError(
            f"no study named {name!r} in {shown(storage_text)}; existing studies: "
            f"{', '.join(sorted(names)) or 'none'}"
        )
    study_id = study_id_of(names[name])
    live = live_trials(storage, study_id)
    if live:
        raise DrltuneError(
            f"study {name!r} has {live} running trial(s) whose search is alive (fresh heartbeats); "
            "stop that search first"
        )
    n = len(storage.get_all_trials(study_id, deepcopy=False))
    optuna.delete_study(study_name=name, storage=storage)
    return n
