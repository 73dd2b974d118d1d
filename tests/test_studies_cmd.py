"""`drltune studies`: --compare A B side by side within 100 columns, --delete with its confirmation,
refused while a search is alive on the study (fresh heartbeats)."""
from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial
from test_explore_study import run_cli

from drltune.search.storage import open_storage

DIST = {"method": CategoricalDistribution(["baseline", "dr"]), "fusion": CategoricalDistribution(["concat"]),
        "lr": FloatDistribution(1e-3, 1e-1, log=True)}


def study_with(url: str, name: str, values: dict[str, float], test_acc: float = 0.5) -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=url, direction="maximize")
    study.set_user_attr("dataset", "synthetic")
    for method, value in values.items():
        study.add_trial(create_trial(state=TrialState.COMPLETE, value=value, distributions=DIST,
                                     params={"method": method, "fusion": "concat", "lr": 0.01},
                                     user_attrs={"test_acc": test_acc}))
    return study


def test_compare_shows_two_studies_side_by_side(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study_with(url, "first", {"baseline": 0.4, "dr": 0.6}, test_acc=0.55)
    study_with(url, "second-with-a-much-longer-name-than-fits-in-its-column-of-the-table", {"baseline": 0.7})
    code, out, err = run_cli(capsys, "studies", "--storage", url, "--compare", "first",
                             "second-with-a-much-longer-name-than-fits-in-its-column-of-the-table")
    assert code == 0, err
    lines = out.splitlines()
    assert all(len(line) <= 100 for line in lines)
    rows = {line.split("  ")[0].strip(): line.split() for line in lines[1:]}
    assert lines[0].split()[0] == "first" and lines[0].rstrip().endswith("…")
    assert rows["best val_acc"][2:] == ["0.6000", "(#1)", "0.7000", "(#0)"]
    assert rows["its test_acc"][2:] == ["0.5500", "0.5000"]
    assert rows["best dr"][2:] == ["0.6000", "-"] and rows["best baseline"][2:] == ["0.4000", "0.7000"]
    code, _, err = run_cli(capsys, "studies", "--storage", url, "--compare", "first", "nope")
    assert code != 0 and err.startswith("error: no study named 'nope'")


def test_delete_asks_and_deletes_only_what_it_names(tmp_path, capsys, monkeypatch):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study_with(url, "keep", {"dr": 0.5})
    study_with(url, "drop", {"dr": 0.4, "baseline": 0.3})
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("n\n"))
    code, _, err = run_cli(capsys, "studies", "--storage", url, "--delete", "drop")
    assert code != 0 and "not deleted" in err
    assert sorted(optuna.get_all_study_names(url)) == ["drop", "keep"]
    monkeypatch.setattr("sys.stdin", __import__("io").StringIO("y\n"))
    code, out, _ = run_cli(capsys, "studies", "--storage", url, "--delete", "drop")
    assert code == 0 and out.rstrip().endswith("? [y/N]: deleted study 'drop' (2 trials)")
    assert optuna.get_all_study_names(url) == ["keep"]
    code, _, err = run_cli(capsys, "studies", "--storage", url, "--delete", "drop", "--yes")
    assert code != 0 and err.startswith("error: no study named 'drop'") and "keep" in err


def test_delete_is_refused_while_a_search_beats_on_the_study(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    storage = open_storage(url, heartbeat=True)
    study = optuna.create_study(study_name="live", storage=storage, direction="maximize")
    trial = study.ask(DIST)
    storage.record_heartbeat(trial._trial_id)  # what a running search's Heartbeat does
    code, _, err = run_cli(capsys, "studies", "--storage", url, "--delete", "live", "--yes")
    assert code != 0 and "1 running trial(s) whose search is alive" in err
    assert optuna.get_all_study_names(url) == ["live"]
    study.tell(trial, state=TrialState.FAIL)  # the search ended
    code, out, _ = run_cli(capsys, "studies", "--storage", url, "--delete", "live", "--yes")
    assert code == 0 and optuna.get_all_study_names(url) == []
