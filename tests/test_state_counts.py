"""One count of trial states (record.state_counts) behind `studies`, `explore`, `export` and the
search's progress line: the study the issue met after a Ctrl-C must read the same everywhere."""
from __future__ import annotations

import json

import optuna
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial
from test_explore_study import run_cli

from drltune import record
from drltune.search.progress import Progress

DIST = {"lr": FloatDistribution(1e-3, 1e-1, log=True)}


def add(study: optuna.Study, state: TrialState, **attrs) -> None:
    study.add_trial(create_trial(state=state, value=0.5 if state == TrialState.COMPLETE else None,
                                 params={"lr": 0.01}, distributions=DIST, user_attrs=attrs,
                                 intermediate_values={0: 0.4} if state == TrialState.PRUNED else None))


def after_ctrl_c(url: str) -> optuna.Study:
    """1 complete, 1 pruned, 1 real failure, 2 cut off by Ctrl-C with their retries queued,
    1 closed unrun past --trials, 1 still running (another driver's)."""
    study = optuna.create_study(study_name="cut", storage=url, direction="maximize")
    study.set_user_attr(record.DATASET, "synthetic")
    study.ask(DIST)  # before the retries are queued: ask() would take one of them
    add(study, TrialState.COMPLETE)
    add(study, TrialState.PRUNED)
    add(study, TrialState.FAIL, error="NonFiniteLoss: loss became nan")
    for _ in range(2):
        add(study, TrialState.FAIL, error="interrupted: stopped by Ctrl-C", interrupted=True)
        study.enqueue_trial({"lr": 0.01})
    add(study, TrialState.FAIL, error="not run: the study had its --trials", not_run=True, interrupted=True)
    return study


def test_every_command_counts_the_same(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = after_ctrl_c(url)
    expected = {"complete": 1, "pruned": 1, "failed": 1, "interrupted": 2, "not_run": 1, "running": 1, "queued": 2}
    assert record.state_counts(study.trials) == expected
    text = "1 complete, 1 pruned, 1 failed, 2 interrupted, 1 not run, 1 running, 2 queued"

    code, out, _ = run_cli(capsys, "studies", "--storage", url)
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("cut  9 trials  dataset synthetic  started ")
    assert " ".join(line.strip() for line in lines[1:]) == f"best 0.5000 (#1 unknown/unknown); {text}"
    assert all(len(line) <= 100 for line in lines)
    code, out, _ = run_cli(capsys, "explore", "--study", "cut", "--storage", url, "--format", "json", "--no-html")
    assert code == 0 and json.loads(out)["counts"] == expected
    code, out, _ = run_cli(capsys, "explore", "--study", "cut", "--storage", url, "--no-html")
    assert out.splitlines()[0] == f"study cut (dataset synthetic): 9 trials: {text}"

    status = Progress(study, 5, print, running=lambda: 0).status()
    assert status.startswith("[2/5] complete 1, pruned 1, failed 1, running 0, interrupted 2, not run 1, queued 2")


def test_export_names_the_states_when_nothing_completed(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = optuna.create_study(study_name="cut", storage=url, direction="maximize")
    add(study, TrialState.FAIL, error="interrupted: stopped by Ctrl-C", interrupted=True)
    study.enqueue_trial({"lr": 0.01})
    code, _, err = run_cli(capsys, "export", "--study", "cut", "--storage", url, "-o", "-")
    assert code != 0
    assert err.strip() == ("error: study 'cut' has no complete trial (1 interrupted, 1 queued); "
                           "pick one with --trial N")
