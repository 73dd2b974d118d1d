"""What optuna-dashboard shows of a drltune study, read through the dashboard's own HTTP API.

A study is written the way the search writes one (the bridge's `before_tell` hook, the tell,
then the publisher), then fetched as a browser would: `GET /api/studies/<id>` for the metric
name, the notes and the artifact lists, `GET /artifacts/...` for the files themselves.
"""
from __future__ import annotations

import csv
import io
import json
from wsgiref.util import setup_testing_defaults

import optuna
import optuna_dashboard
import pytest
from optuna.artifacts import FileSystemArtifactStore
from optuna.trial import TrialState

from drltune.search.curve_svg import curve_svg
from drltune.search.dashboard_view import (
    PRUNED_VALUE,
    DashboardPublisher,
    artifact_dir,
    describe_study,
    history_csv,
    trial_note,
)

SPACE_TEXT = "epochs: 4\nspace:\n  lr: {low: 0.01, high: 0.1, log: true}\nmethods:\n  baseline: {}\n  dr: declared\n"


def record(epoch: int, acc: float, reinit: bool = False) -> dict:
    rec = {"epoch": epoch, "train_loss": 1.0 - 0.1 * epoch, "val_acc": acc, "val_f1": acc - 0.01,
           "val_acc_audio": acc - 0.1, "val_acc_visual": acc - 0.2, "val_acc_best": acc, "reinit": reinit,
           "seconds": 0.5}
    if reinit:
        rec.update(purity_train_audio=0.91, purity_val_audio=0.55, purity_train_visual=0.42, purity_val_visual=0.40,
                   reinit_weight_audio=0.83, reinit_weight_visual=0.06)
    return rec


def finish(study: optuna.Study, publisher: DashboardPublisher, method: str, accs: list[float],
           state: TrialState, reinit_at: tuple[int, ...] = ()) -> int:
    """One trial, stored like the bridge stores it: per-epoch reports, attrs, artifacts, tell, note."""
    study.enqueue_trial({"method": method})
    trial = study.ask()
    trial.suggest_categorical("method", ["baseline", "dr"])
    history = [record(e, a, e in reinit_at) for e, a in enumerate(accs)]
    for rec in history:
        trial.report(rec["val_acc"], rec["epoch"])
    best = max(range(len(accs)), key=lambda i: (accs[i], -i))
    attrs = {"config": {"method": method, "epochs": 4, "lr": 0.05, "params": {"alpha": 3.0}},
             "history": history, "best_epoch": best, "epochs_run": len(history),
             "val_acc_audio": history[best]["val_acc_audio"], "val_acc_visual": history[best]["val_acc_visual"]}
    if state == TrialState.COMPLETE:
        attrs.update(test_acc=0.5, test_acc_audio=0.4, test_acc_visual=0.3)
    for key, value in attrs.items():
        trial.set_user_attr(key, value)
    publisher.attach_artifacts(trial, state, attrs)
    study.tell(trial, max(accs) if state == TrialState.COMPLETE else None, state=state)
    publisher(trial.number)
    return trial.number


def get(app, path: str) -> tuple[str, bytes]:
    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("dashboard")
    url = f"sqlite:///{root / 'studies' / 'drltune.db'}"
    (root / "studies").mkdir()
    study = optuna.create_study(study_name="view", storage=url, direction="maximize")
    for key, value in {"dataset": "synthetic", "space": SPACE_TEXT, "command": "drltune search --trials 3",
                       "max_epochs": 4, "pruner": "median", "sampler": "tpe"}.items():
        study.set_user_attr(key, value)
    describe_study(study)
    publisher = DashboardPublisher(study, url, refresh_s=3600)
    numbers = {"dr": finish(study, publisher, "dr", [0.30, 0.45, 0.40, 0.55], TrialState.COMPLETE, reinit_at=(2,)),
               "pruned": finish(study, publisher, "baseline", [0.35, 0.6375, 0.60], TrialState.PRUNED),
               "baseline": finish(study, publisher, "baseline", [0.3, 0.5, 0.52, 0.51], TrialState.COMPLETE)}
    publisher.finish()
    app = optuna_dashboard.wsgi(study._storage, artifact_store=FileSystemArtifactStore(artifact_dir(url)))
    status, body = get(app, "/api/studies")
    study_id = json.loads(body)["study_summaries"][0]["study_id"]
    status, body = get(app, f"/api/studies/{study_id}")
    assert status.startswith("200")
    detail = json.loads(body)
    trials = {t["number"]: t for t in detail["trials"]}
    return app, study_id, detail, {k: trials[n] for k, n in numbers.items()}, root


def test_metric_name_and_study_note(served):
    _, _, detail, _, _ = served
    assert detail["objective_names"] == ["val_acc"]
    note = detail["note"]["body"]
    assert PRUNED_VALUE in note
    assert "```yaml\n" + SPACE_TEXT.rstrip() + "\n```" in note  # the space reads as YAML, line by line
    assert "| command | `drltune search --trials 3` |" in note


def test_trial_notes_hold_config_modalities_and_reinits(served):
    _, _, _, trials, _ = served
    dr = trials["dr"]["note"]["body"]
    assert "Best val_acc **0.5500** at epoch 3 of 4" in dr
    assert "| validation | 0.5500 | 0.4500 | 0.3500 |" in dr and "| test | 0.5000 | 0.4000 | 0.3000 |" in dr
    assert "| 2 | 0.910 / 0.550 | 0.420 / 0.400 | 0.830 | 0.060 |" in dr  # the re-init's purities and weights
    assert "```yaml\nmethod: dr\n" in dr
    pruned = trials["pruned"]
    assert pruned["state"] == "Pruned" and pruned["values"] == [0.60]  # Optuna: the last epoch's value
    assert "The dashboard's Value **0.6000** is the last epoch's (epoch 2); the best so far" in pruned["note"]["body"]
    assert "**0.6375** at epoch 1" in pruned["note"]["body"]
    assert "DR re-inits" not in trials["baseline"]["note"]["body"]


def test_artifacts_are_listed_and_served_whole(served):
    app, study_id, _, trials, _ = served
    trial = trials["dr"]
    listed = {a["filename"]: a for a in trial["artifacts"]}
    assert set(listed) == {"history.csv", "learning_curve.svg"}
    assert listed["learning_curve.svg"]["mimetype"] == "image/svg+xml"  # shown inline as an image
    status, body = get(app, f"/artifacts/{study_id}/{trial['trial_id']}/{listed['history.csv']['artifact_id']}")
    rows = list(csv.DictReader(io.StringIO(body.decode())))
    assert status.startswith("200") and [float(r["val_acc"]) for r in rows] == [0.30, 0.45, 0.40, 0.55]
    assert rows[2]["reinit_weight_audio"] == "0.83"
    status, body = get(app, f"/artifacts/{study_id}/{trial['trial_id']}/{listed['learning_curve.svg']['artifact_id']}")
    assert status.startswith("200") and body.startswith(b"<svg") and b"re-init after epoch 2" in body


def test_study_figures(served):
    _, _, detail, _, _ = served
    figures = {g["id"]: json.loads(g["graph_object"]) for g in detail["plotly_graph_objects"]}
    assert set(figures) == {"best-per-method", "curves-by-method"}
    bars = figures["best-per-method"]["data"][0]
    assert bars["x"] == ["baseline", "dr"] and bars["y"] == [0.52, 0.55]
    marks = [t for t in figures["curves-by-method"]["data"] if t.get("name") == "re-init"]
    assert len(marks) == 1 and marks[0]["x"] == [2]


def test_a_long_history_is_whole_in_its_artifact_not_cut_like_the_attribute():
    history = [record(e, 0.5) for e in range(90)]
    text = history_csv(history)
    assert len(text.splitlines()) == 91 and len(json.dumps(history)) > 1024  # the dashboard cuts attrs at 1,024
    assert curve_svg(history, "t").count("<polyline") == 3


def test_publisher_failures_are_one_warning_not_a_crash(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    study = optuna.create_study(study_name="x", storage=url, direction="maximize")
    said: list[str] = []
    publisher = DashboardPublisher(study, url, warn=said.append)
    publisher(99)  # no such trial
    publisher(98)
    assert len(said) == 1 and said[0].startswith("warning: dashboard note of trial 99 not written")


def test_trial_note_of_a_study_made_before_the_dashboard_view():
    """Old trials (no history attr, no config) still get a readable note."""
    trial = optuna.trial.create_trial(state=TrialState.COMPLETE, value=0.5, params={},
                                      distributions={}, intermediate_values={0: 0.4, 1: 0.5})
    note = trial_note(trial)
    assert note.startswith("## Trial -1: COMPLETE") and "Best val_acc **0.5000**." in note and "None" not in note


def test_dashboard_command_points_at_the_only_study_and_its_artifacts(served, tmp_path):
    from drltune.commands.search import study_page
    from drltune.errors import DrltuneError

    _, study_id, _, _, root = served
    storage = optuna.storages.RDBStorage(f"sqlite:///{root / 'studies' / 'drltune.db'}")
    assert study_page(storage, None) == f"/dashboard/studies/{study_id}"
    assert study_page(storage, "view") == f"/dashboard/studies/{study_id}"
    with pytest.raises(DrltuneError, match="no study named 'nope'; existing studies: view"):
        study_page(storage, "nope")
    assert artifact_dir(f"sqlite:///{root / 'studies' / 'drltune.db'}") == (root / "studies" / "artifacts").resolve()
