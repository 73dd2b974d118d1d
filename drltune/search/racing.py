"""Racing: the best *mean*, not the luckiest seed.

A search's best val_acc is the maximum over trials of single-seed values, so it names the config
whose one seed was luckiest as often as the best config (the winner's curse). Racing, as SMAC's
intensification does, re-trains the search's K best complete trials on fresh seeds once the trials
are done and names the one with the best mean best-val_acc over its search seed and the fresh ones.
The runs are `drltune verify`'s (stored as `verify:trial<N>:config:seed<S>`), so a killed race
resumes where it stopped and `drltune explore` shows their test accuracies; the ranking is stored
in the study attribute `race`, and `export` then writes the raced winner first.
"""

from __future__ import annotations

import statistics
from typing import Any, Callable

import optuna
from optuna.trial import FrozenTrial, TrialState

from drltune import record
from drltune.search.objective import complete_primary


def rank(study: optuna.Study, trials: list[FrozenTrial], seeds: list[int]) -> list[dict[str, Any]]:
    """Each trial's mean best val_acc over its search seed and the fresh `seeds` it has runs for;
    best mean first (ties: the better single-seed value, then the lower number)."""
    from drltune.verify import OWN, run_key, stored_runs

    runs = stored_runs(study)
    rows = []
    for t in trials:
        fresh = [
            runs[key]["best_val_acc"]
            for key in (run_key(t.number, OWN, s) for s in seeds)
            if key in runs
        ]
        values = [complete_primary(t), *fresh]
        rows.append(
            {
                "trial": t.number,
                "mean_val_acc": statistics.mean(values),
                "seeds": len(values),
                "search_val_acc": complete_primary(t),
            }
        )
    return sorted(rows, key=lambda r: (-r["mean_val_acc"], -r["search_val_acc"], r["trial"]))


def run_race(
    study: optuna.Study,
    top: int,
    n_seeds: int,
    concurrent: int,
    cpus: float | None,
    gpus: float | None,
    address: str | None,
    echo: Callable[[str], None],
) -> list[dict[str, Any]]:
    """Race the `top` best complete trials on `n_seeds` fresh seeds (Ray, `concurrent` at a time);
    store and return the ranking. Runs already stored (an earlier, cut-off race) are not trained
    again."""
    from drltune.explore.export import select_trials
    from drltune.verify import SEEDS_ATTR, execute, fresh_seeds, plan, stored_runs

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        return []
    trials = select_trials(study, top, by_race=False)
    seeds = fresh_seeds(study, n_seeds)
    study.set_user_attr(SEEDS_ATTR, sorted(set(study.user_attrs.get(SEEDS_ATTR, [])) | set(seeds)))
    runs = plan(study, trials, seeds, [], [])
    done = stored_runs(study)
    todo = [r for r in runs if r.key not in done]
    stored = f", {len(runs) - len(todo)} already stored" if len(todo) < len(runs) else ""
    echo(
        f"racing the top {len(trials)} (trials {', '.join(f'#{t.number}' for t in trials)}) on "
        f"{n_seeds} fresh seeds {seeds}: {len(todo)} runs to train{stored}"
    )
    failed = execute(study, todo, concurrent, cpus, gpus, address, echo) if todo else 0
    ranking = rank(study, trials, seeds)
    study.set_user_attr(record.RACE, {"top": len(trials), "seeds": seeds, "ranking": ranking})
    if failed:
        echo(
            f"note: {failed} racing run(s) failed; the ranking counts the seeds each trial has "
            "(run the same command again to retry them)"
        )
    return ranking
