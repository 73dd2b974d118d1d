"""Racing (`drltune search --race K`): the winner is the best mean over seeds, not the luckiest one
seed; export and the summary follow the race, and one line says how the best was chosen."""
from __future__ import annotations

import optuna
import pytest
from test_explore_study import new_study, record_trial

from drltune import record
from drltune.config import TrialConfig
from drltune.explore.export import select_trials
from drltune.search.choice import choice_line
from drltune.search.progress import summary_lines
from drltune.search.racing import rank, run_race
from drltune.train import Trainer
from drltune.verify import PREFIX

optuna.logging.set_verbosity(optuna.logging.WARNING)


def _store_run(study: optuna.Study, trial: int, seed: int, best_val: float) -> None:
    study.set_user_attr(f"{PREFIX}trial{trial}:config:seed{seed}",
                        {"trial": trial, "label": "config", "seed": seed, "method": "baseline", "test_acc": 0.5,
                         "test_f1": 0.5, "test_acc_audio": 0.5, "test_acc_visual": 0.5, "best_val_acc": best_val,
                         "best_epoch": 1})


def test_the_raced_winner_is_the_best_mean_and_export_and_summary_follow_it() -> None:
    study = optuna.create_study(direction="maximize")
    for value in (0.60, 0.55, 0.40):  # trial 0 looks best on its one seed
        study.add_trial(optuna.trial.create_trial(value=value, user_attrs={"config": {"seed": 0}}))
    _store_run(study, 0, 1, 0.30)  # ... and falls back on a fresh seed: mean 0.45
    _store_run(study, 1, 1, 0.51)  # trial 1: mean 0.53
    assert choice_line(study).startswith("how the best was chosen: the highest val_acc of one training run per "
                                         "trial (seed 0)")
    ranking = rank(study, study.get_trials()[:2], seeds=[1])
    assert [(r["trial"], round(r["mean_val_acc"], 4), r["seeds"]) for r in ranking] == [(1, 0.53, 2), (0, 0.45, 2)]
    assert select_trials(study, 1)[0].number == 0  # no race stored yet: the best single seed
    study.set_user_attr(record.RACE, {"top": 2, "seeds": [1], "ranking": ranking})
    assert [t.number for t in select_trials(study, 3)] == [1, 0, 2]
    assert [t.number for t in select_trials(study, 3, by_race=False)] == [0, 1, 2]
    lines = summary_lines(study)
    assert "raced: mean over seeds" in lines[0] and lines[1].startswith(" 1. #1 ")
    assert "mean val_acc 0.5300 over 2 seeds" in lines[1]
    chosen = next(i for i, line in enumerate(lines) if line.startswith("how the best was chosen: "))
    assert lines[chosen].startswith("how the best was chosen: raced, the top 2 re-trained on 1 fresh seeds")
    assert all(len(line) <= 100 for line in lines[chosen:])  # wrapped to the tables' width, the last lines
    assert all(line.startswith("  ") for line in lines[chosen + 1:])
    said = " ".join(line.strip() for line in lines[chosen:])
    assert "#1 wins with 0.5300 over 2 seeds (on its one search seed #0 looked best, 0.6000)" in said


def test_a_race_trains_fresh_seeds_through_verify_and_resumes(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    study = new_study(url, "r")
    for lr in (0.05, 0.01, 0.002):
        record_trial(study, {"method": "baseline", "fusion": "concat", "lr": lr})
    lines: list[str] = []
    ranking = run_race(study, top=2, n_seeds=1, concurrent=2, cpus=1.0, gpus=None, address=None, echo=lines.append)
    top2 = select_trials(study, 2, by_race=False)
    assert "racing the top 2" in lines[0] and "2 runs to train" in lines[0]
    assert {r["trial"] for r in ranking} == {t.number for t in top2}
    for row in ranking:  # the mean of the search's value and the trial's config trained on the fresh seed 1
        trial = study.trials[row["trial"]]
        fresh = Trainer(TrialConfig.from_dict(trial.user_attrs["config"]).replace(seed=1)).fit().best_val_acc
        assert row["mean_val_acc"] == pytest.approx((trial.value + fresh) / 2)
    stored = optuna.load_study(study_name="r", storage=url)
    assert stored.user_attrs[record.RACE]["ranking"] == ranking and stored.user_attrs[record.RACE]["seeds"] == [1]
    assert select_trials(stored, 1)[0].number == ranking[0]["trial"]
    again: list[str] = []
    assert run_race(stored, 2, 1, 2, 1.0, None, None, again.append) == ranking
    assert "0 runs to train, 2 already stored" in again[0]


def test_the_choice_line_quotes_the_benchmark_and_says_whether_this_search_ran_its_route(tmp_path, monkeypatch):
    import json

    from drltune.search import choice

    figures = {"benchmark": "benchmarks/search_sim.py", "route": "r", "searches": 100, "trials": 64, "epochs": 30,
               "settings": {"sampler": "tpe", "pruner": "median", "race": 0},
               "median_regret": 1.234, "p90_regret": 4.5, "epochs_share": 0.31}
    (tmp_path / "f.json").write_text(json.dumps(figures))
    monkeypatch.setattr(choice, "FIGURES", tmp_path / "f.json")
    study = optuna.create_study(direction="maximize")
    study.add_trial(optuna.trial.create_trial(value=0.5, user_attrs={"config": {"seed": 3}}))
    study.set_user_attr(record.SAMPLER, "tpe")
    study.set_user_attr(record.PRUNER, "median")
    line = choice_line(study)
    assert "(seed 3)" in line and "100 search seeds not used to choose it) this search's route picked a config " \
        "1.2 points (median) and 4.5 (90th percentile)" in line and "31 % of the unpruned epochs" in line
    study.set_user_attr(record.PRUNER, "sha")
    assert "the default route (sampler tpe, pruner median, race 0), which this search did not run" \
        in choice_line(study)
    monkeypatch.setattr(choice, "FIGURES", tmp_path / "missing.json")
    assert "search_sim" not in choice_line(study)
