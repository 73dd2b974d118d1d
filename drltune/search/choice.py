"""How a search's best was chosen, in one line, with what the search benchmark measured.

"Best val_acc" is the maximum of single-seed values, so a user must know whether the named config
won on one seed or on a race over several, and how far the default route's pick falls from the
best config on the benchmark (`benchmarks/search_sim.py`, whose figures it writes to
`search_benchmark.json` beside this file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna

from drltune import record

FIGURES = Path(__file__).with_name("search_benchmark.json")


def benchmark_figures() -> dict[str, Any] | None:
    try:
        return json.loads(FIGURES.read_text())
    except (OSError, ValueError):
        return None


def study_settings(study: optuna.Study) -> dict[str, Any]:
    """The route a study ran, in the benchmark's terms (sampler, pruner, race size)."""
    race = study.user_attrs.get(record.RACE)
    return {
        "sampler": study.user_attrs.get(record.SAMPLER),
        "pruner": study.user_attrs.get(record.PRUNER),
        "race": race["top"] if isinstance(race, dict) else 0,
    }


def benchmark_clause(figures: dict[str, Any] | None, settings: dict[str, Any]) -> str:
    if not figures:
        return ""
    same = all(settings.get(k) == v for k, v in figures["settings"].items())
    ran = (
        "this search's route"
        if same
        else "the default route ("
        + ", ".join(f"{k} {v}" for k, v in figures["settings"].items())
        + "), which this search did not run,"
    )
    return (
        f"; on {figures['benchmark']} ({figures['trials']} trials x {figures['epochs']} epochs, "
        f"built-in data, {figures['searches']} search seeds not used to choose it) {ran} picked a "
        f"config {figures['median_regret']:.1f} points (median) and {figures['p90_regret']:.1f} "
        "(90th percentile) of fresh-seed test accuracy below the best one, with "
        f"{100 * figures['epochs_share']:.0f} % of the unpruned epochs"
    )


def choice_line(study: optuna.Study) -> str | None:
    """`how the best was chosen: ...` for a study with complete trials (None without)."""
    ranking = record.raced_ranking(study)
    figures = benchmark_figures()
    if ranking:
        race = study.user_attrs[record.RACE]
        win = ranking[0]
        single = max(ranking, key=lambda r: (r["search_val_acc"], -r["trial"]))
        line = (
            f"how the best was chosen: raced, the top {race['top']} re-trained on "
            f"{len(race['seeds'])} fresh seeds and ranked by mean val_acc; #{win['trial']} wins "
            f"with {win['mean_val_acc']:.4f} over {win['seeds']} seeds"
        )
        if single["trial"] != win["trial"]:
            line += (
                f" (on its one search seed #{single['trial']} looked best, "
                f"{single['search_val_acc']:.4f})"
            )
        return line + benchmark_clause(figures, study_settings(study))
    if not study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
        return None
    seeds = {record.stored_config(t).get("seed") for t in study.get_trials(deepcopy=False)} - {None}
    seed = f"seed {seeds.pop()}" if len(seeds) == 1 else "one seed each"
    return (
        f"how the best was chosen: the highest val_acc of one training run per trial ({seed}), the "
        "luckiest of noisy single-seed values; `--race K` or `drltune verify` re-train the top on "
        "fresh seeds" + benchmark_clause(figures, study_settings(study))
    )
