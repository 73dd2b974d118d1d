"""--tracker mlflow against a real MLflow sqlite store, read back through MLflow's own API.

The search side runs the real bridge without a Ray runtime (as test_search_bridge.py does): each
way a trial ends, and a trial cut off then retried by a second driver (a resumed search), which
must continue its run rather than open a second one or log an epoch twice.
"""
from __future__ import annotations

import json
import sys

import optuna
import pytest
import yaml

mlflow = pytest.importorskip("mlflow")
from mlflow.tracking import MlflowClient  # noqa: E402
from test_explore_study import run_cli  # noqa: E402

from drltune.config import TrialConfig  # noqa: E402
from drltune.search.bridge import OptunaBridge  # noqa: E402
from drltune.search.liveness import SharedBudget  # noqa: E402
from drltune.search.pruning import ReinitAwarePruner  # noqa: E402
from drltune.search.space_file import parse_space  # noqa: E402
from drltune.search.storage import open_storage  # noqa: E402
from drltune.search.tracked import SearchTracking  # noqa: E402
from drltune.search.trainable import RESTORED, epoch_result  # noqa: E402
from drltune.tracking import MlflowTracker  # noqa: E402

SPACE = "space: {lr: {low: 1.0e-3, high: 1.0e-1, log: true}}\nmethods: {baseline: {}, dr: {alpha: {low: 1, high: 3}}}"


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    """One MLflow store for the module: creating one runs MLflow's migrations (over 10 s here)."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


def rec(epoch: int, val_acc: float) -> dict:
    return {"epoch": epoch, "val_acc": val_acc, "val_acc_audio": val_acc / 2, "val_acc_visual": val_acc / 3,
            "train_loss": 1.0 - val_acc, "reinit": False}


def final(epoch: int, val_acc: float, best: float, best_epoch: int) -> dict:
    return {**epoch_result(rec(epoch, val_acc)), "best_val_acc": best, "best_epoch": best_epoch,
            "test_acc": 0.5, "test_f1": 0.4, "test_acc_audio": 0.3, "test_acc_visual": 0.2}


def bridge_on(study: optuna.Study, uri: str) -> OptunaBridge:
    """A driver on `study` with --tracker mlflow (a fresh tracker, as a new search process has)."""
    bridge = OptunaBridge(study, parse_space(yaml.safe_load(SPACE), max_epochs=3),
                          TrialConfig(epochs=3, encoder_width=4), SharedBudget(study, 10, 2), threads=1)
    bridge.tracking = SearchTracking(MlflowTracker(uri, study.study_name), study.study_name)
    return bridge


def runs_by_trial(uri: str, experiment: str) -> dict[str, mlflow.entities.Run]:
    client = MlflowClient(uri)
    found = client.search_runs([client.get_experiment_by_name(experiment).experiment_id])
    by_trial = {}
    for run in found:
        assert run.data.tags["drltune.trial"] not in by_trial, "two runs for one trial"
        by_trial[run.data.tags["drltune.trial"]] = run
    return by_trial


def steps(uri: str, run_id: str, key: str = "val_acc") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key))


def test_search_logs_one_run_per_trial_through_every_outcome_and_a_resume(tmp_path, uri):
    study = optuna.create_study(study_name="s1", direction="maximize",
                                pruner=ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.45), final_step=2),
                                storage=open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=True))
    first = bridge_on(study, uri)
    done = first.suggest("done")
    for epoch, acc in enumerate([0.5, 0.6]):
        first.on_epoch("done", epoch_result(rec(epoch, acc)))
    first.on_epoch("done", final(2, 0.55, best=0.6, best_epoch=1))
    first.on_trial_complete("done", final(2, 0.55, best=0.6, best_epoch=1))
    pruned = first.suggest("pruned")
    assert first.on_epoch("pruned", epoch_result(rec(0, 0.2))) is True
    first.on_trial_complete("pruned", {**epoch_result(rec(0, 0.2)), "done": True})
    crashed = first.suggest("crashed")
    first.on_trial_complete("crashed", {"error": "NonFiniteLoss: loss became nan", "val_acc": float("nan")})
    cut = first.suggest("cut")
    for epoch, acc in enumerate([0.5, 0.52]):
        first.on_epoch("cut", epoch_result(rec(epoch, acc)))
    first.on_trial_complete("cut", None)  # Ctrl-C: closed as interrupted, retried by the next run

    second = bridge_on(study, uri)  # the resumed search: another process, another tracker
    retry = second.suggest("retry")
    assert study.trials[retry["optuna_trial"]].user_attrs["retry_of"] == cut["optuna_trial"]
    # Its checkpoint held epoch 0 only: epoch 1 runs again (same numbers), then epoch 2 is new.
    second.on_epoch("retry", {**epoch_result(rec(1, 0.52)), RESTORED: json.dumps([rec(0, 0.5)])})
    second.on_epoch("retry", final(2, 0.58, best=0.58, best_epoch=2))
    second.on_trial_complete("retry", final(2, 0.58, best=0.58, best_epoch=2))

    runs = runs_by_trial(uri, "s1")
    assert set(runs) == {str(t["optuna_trial"]) for t in (done, pruned, crashed, cut)}  # the retry: no own run
    ok = runs[str(done["optuna_trial"])]
    assert ok.info.status == "FINISHED" and ok.data.tags["drltune.state"] == "complete"
    assert ok.data.tags["drltune.study"] == "s1" and ok.data.tags["drltune.method"] == done["trial"]["method"]
    assert steps(uri, ok.info.run_id) == [(0, 0.5), (1, 0.6), (2, 0.55)]
    assert ok.data.metrics["final/best_val_acc"] == 0.6 and ok.data.metrics["final/test_acc"] == 0.5
    assert float(ok.data.params["lr"]) == done["trial"]["lr"] and ok.data.params["epochs"] == "3"
    assert runs[str(pruned["optuna_trial"])].info.status == "KILLED"
    assert runs[str(pruned["optuna_trial"])].data.tags["drltune.state"] == "pruned"
    failed = runs[str(crashed["optuna_trial"])]
    assert failed.info.status == "FAILED" and failed.data.tags["drltune.error"].startswith("NonFiniteLoss")
    resumed = runs[str(cut["optuna_trial"])]
    assert resumed.info.status == "FINISHED" and resumed.data.tags["drltune.state"] == "complete"
    assert resumed.data.tags["drltune.optuna_trial"] == str(retry["optuna_trial"])
    assert steps(uri, resumed.info.run_id) == [(0, 0.5), (1, 0.52), (2, 0.58)]  # each epoch once
    assert resumed.data.metrics["final/best_val_acc"] == 0.58


def test_train_logs_one_run_per_seed(tmp_path, capsys, monkeypatch, uri):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # the default when --tracker-uri is not given
    metrics = tmp_path / "m.json"
    code, _, err = run_cli(capsys, "train", "--quiet", "--epochs", "2", "--seeds", "2", "--set", "threads=1",
                           "--set", "batch_size=16", "--set", "encoder_width=4", "--set", "dataset_params.n_train=40",
                           "--tracker", "mlflow", "--metrics-out", str(metrics))
    assert code == 0, err
    trained = json.loads(metrics.read_text())["runs"]
    found = mlflow.search_runs(experiment_names=["drltune-train"], output_format="list")
    assert len(found) == 2 and all(run.info.status == "FINISHED" for run in found)
    for run in found:
        seed = int(run.data.params["seed"])
        assert run.data.metrics["final/test_acc"] == trained[seed]["test_acc"]
        history = MlflowClient(uri).get_metric_history(run.info.run_id, "val_acc")
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"], r["val_acc"]) for r in trained[seed]["history"]]


def test_tracker_without_mlflow_is_one_line_naming_the_extra(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now raises ImportError
    for command in ("train", "search"):
        code, out, err = run_cli(capsys, command, "--tracker", "mlflow", "--tracker-uri", f"sqlite:///{tmp_path}/x.db")
        assert code != 0 and out == ""
        assert err.strip().splitlines() == ["error: --tracker mlflow needs MLflow: pip install 'drltune[mlflow]'"]
    assert not (tmp_path / "x.db").exists()
