"""End to end: a real `drltune search` on the built-in dataset, then explore, export and train.

Slow (starts Ray). The tables are checked against the storage the search wrote, and every
exported trial, trained again by `drltune train` in a fresh process, must give back exactly
the accuracy the search stored for it. `explore` and `export` run in this process (their output,
not their process, is checked: a fresh interpreter would import torch and plotly again each time).
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from test_explore_study import run_cli

pytestmark = pytest.mark.slow

SPACE = """
epochs: 2
fixed:
  encoder_width: 4
  batch_size: 16
  dataset_params: {n_train: 60, n_val: 24, n_test: 24, audio_freq: 16, audio_time: 16, image_size: 16}
space:
  lr: {low: 1.0e-2, high: 1.0e-1, log: true}
  fusion: {choices: [concat, sum]}
methods:
  baseline: {}
  dr:
    reinit_epoch: {low: 1, high: 1}
    alpha: {low: 0.5, high: 10.0, log: true}
    reinit_num: {low: 1, high: 2}
"""


def drltune(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "drltune.cli", *args], cwd=cwd, check=True,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def searched(tmp_path_factory) -> tuple[Path, optuna.Study]:
    root = tmp_path_factory.mktemp("search_e2e")
    (root / "space.yaml").write_text(SPACE)
    run = drltune(root, "search", "--dataset", "synthetic", "--space", "space.yaml", "--study", "e2e",
                  "--trials", "4", "--max-epochs", "2", "--concurrent", "2", "--race", "3")
    (root / "search.out").write_text(run.stdout)
    url = f"sqlite:///{root / 'studies' / 'drltune.db'}"
    return root, optuna.load_study(study_name="e2e", storage=url)


def test_search_prints_epochs_and_next_steps(searched):
    root, _ = searched
    out = (root / "search.out").read_text()
    assert re.search(r"^  running: #\d+ 1/2 epochs \(val \d\.\d{3}\)", out, re.M)  # the first epoch, not silence
    assert out.count("new best ") >= 1  # the best parameters are repeated only when the best changes
    steps = out.split("\nnext:\n")[1].splitlines()
    assert [line.split()[:2] for line in steps] == [["drltune", "explore"], ["drltune", "export"],
                                                     ["drltune", "train"], ["drltune", "dashboard"]]
    assert "--study e2e" in steps[0] and "--seeds 3" in steps[2]


def test_a_raced_search_names_the_best_mean_first(searched):
    root, study = searched
    out = (root / "search.out").read_text()
    ranking = study.user_attrs["race"]["ranking"]  # --race 3 on the default 2 fresh seeds
    assert "racing the top " in out and len(study.user_attrs["race"]["seeds"]) == 2
    assert ranking and all(r["seeds"] == 3 for r in ranking)
    assert f"how the best was chosen: raced, the top {len(ranking)} re-trained on 2 fresh seeds" in out
    assert "benchmarks/search_sim.py" in out  # the benchmark's figures, shipped with the package
    listed = out.split("configurations of study 'e2e'")[1].splitlines()[1]
    assert listed.startswith(f" 1. #{ranking[0]['trial']} ")


def test_dashboard_api_shows_notes_artifacts_and_the_metric_name(searched):
    """Through optuna-dashboard's own HTTP API, as the browser fetches it."""
    from wsgiref.util import setup_testing_defaults

    import optuna_dashboard
    from optuna.artifacts import FileSystemArtifactStore

    root, study = searched

    def get(path: str) -> bytes:
        environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        status: list[str] = []
        body = b"".join(app(environ, lambda s, h, e=None: status.append(s)))
        assert status[0].startswith("200"), (path, status, body[:200])
        return body

    app = optuna_dashboard.wsgi(study._storage, artifact_store=FileSystemArtifactStore(root / "studies" / "artifacts"))
    detail = json.loads(get(f"/api/studies/{study._study_id}"))
    assert detail["objective_names"] == ["val_acc"] and "```yaml\nepochs: 2\n" in detail["note"]["body"]
    assert {g["id"] for g in detail["plotly_graph_objects"]} == {"best-per-method", "curves-by-method"}
    for trial in detail["trials"]:
        assert trial["note"]["body"].startswith(f"## Trial {trial['number']}: {trial['state'].upper()}")
        files = {a["filename"]: a["artifact_id"] for a in trial["artifacts"]}
        assert set(files) == {"history.csv", "learning_curve.svg"}
        rows = get(f"/artifacts/{study._study_id}/{trial['trial_id']}/{files['history.csv']}").decode().splitlines()
        assert len(rows) == 1 + len(trial["intermediate_values"])  # every epoch, none cut


def test_tables_match_what_the_search_stored(searched, monkeypatch, capsys):
    root, study = searched
    monkeypatch.chdir(root)
    code, out, err = run_cli(capsys, "explore", "--study", "e2e", "--format", "json", "--no-html")
    assert code == 0, err
    data = json.loads(out)
    trials = study.trials
    counts = {label: sum(t.state.name == state for t in trials)
              for state, label in (("COMPLETE", "complete"), ("PRUNED", "pruned"), ("FAIL", "failed"),
                                   ("RUNNING", "running"))}
    counts.update(interrupted=0, not_run=0, queued=0)  # record.state_counts: FAIL split by why, WAITING queued
    assert data["counts"] == counts and counts["complete"] >= 1 and counts["running"] == 0
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=lambda t: (-t.value, t.number))
    assert [r["number"] for r in data["top"][: len(complete)]] == [t.number for t in complete]
    for row, trial in zip(data["top"], complete):
        assert row["value"] == trial.value and row["method"] == trial.params["method"]
        assert row["fusion"] == trial.params["fusion"] and row["epochs_run"] == trial.user_attrs["epochs_run"]
        assert row["test_acc"] == trial.user_attrs["test_acc"]
    methods = {t.params["method"] for t in trials if t.intermediate_values}
    assert {r["method"] for r in data["best_by_method"]} == methods


def test_html_report_holds_every_plot(searched, monkeypatch, capsys):
    root, study = searched
    monkeypatch.chdir(root)
    code, out, err = run_cli(capsys, "explore", "--study", "e2e")
    assert code == 0, err
    page = (root / "studies" / "e2e" / "report.html").read_text()
    assert "report: studies/e2e/report.html" in out
    for title in ("Optimisation history", "Learning curves", "Accuracy of the complete trials by method",
                  "Parameter importances", "Per-modality accuracy"):
        assert title in page
    has_dr = any(t.params.get("method") == "dr" and t.state == TrialState.COMPLETE for t in study.trials)
    assert ("DR parameters against accuracy" in page) == has_dr
    assert page.count("plotly.js v") == 1


def test_export_then_train_reproduces_every_trial(searched, monkeypatch, capsys):
    root, study = searched
    monkeypatch.chdir(root)
    code, _, err = run_cli(capsys, "export", "--study", "e2e", "--top", "4", "-o", "best.yaml")
    assert code == 0, err
    docs = list(yaml.safe_load_all((root / "best.yaml").read_text()))
    drltune(root, "train", "--config", "best.yaml", "--quiet", "--metrics-out", "runs.json")
    runs = json.loads((root / "runs.json").read_text())
    runs = runs.get("runs", [runs])
    assert len(runs) == len(docs) >= 1
    for doc, run in zip(docs, runs):
        trial = study.trials[doc["meta"]["trial"]]
        assert run["best_val_acc"] == trial.value and run["best_epoch"] == trial.user_attrs["best_epoch"]
        assert run["test_acc"] == trial.user_attrs["test_acc"]


def test_missing_study_lists_the_stored_ones(searched, monkeypatch, capsys):
    root, _ = searched
    monkeypatch.chdir(root)
    code, _, err = run_cli(capsys, "explore", "--study", "nope")
    assert code == 2
    assert err.strip() == (f"error: no study named 'nope' in sqlite:///{root.resolve()}/studies/drltune.db; "
                           "existing studies: e2e")  # the default, resolved against the cwd
