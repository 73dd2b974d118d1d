"""The Ray<->Optuna bridge without a Ray runtime: what each way a trial ends leaves in the study."""
from __future__ import annotations

import json

import optuna
import pytest
import yaml
from optuna.trial import TrialState
from ray.tune.search import Searcher

from drltune.config import TrialConfig
from drltune.search.bridge import OptunaBridge, error_message
from drltune.search.checkpoints import CheckpointStore
from drltune.search.liveness import SharedBudget
from drltune.search.pruning import REINIT_ATTR, ReinitAwarePruner
from drltune.search.space_file import parse_space
from drltune.search.storage import StorageUnavailable, open_storage
from drltune.search.trainable import epoch_result

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = "space: {lr: {low: 1.0e-3, high: 1.0e-1, log: true}}\nmethods: {baseline: {}, dr: {alpha: {low: 1, high: 3}}}"


@pytest.fixture
def make_bridge(tmp_path):
    def make(pruner: optuna.pruners.BasePruner, budget: int = 10, **kwargs) -> OptunaBridge:
        study = optuna.create_study(direction="maximize", pruner=pruner,
                                    storage=open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=True))
        space = parse_space(yaml.safe_load(SPACE), max_epochs=3)
        return OptunaBridge(study, space, TrialConfig(epochs=3, encoder_width=4), SharedBudget(study, budget, 2),
                            threads=1, **kwargs)
    return make


def record(epoch: int, val_acc: float, reinit: bool = False) -> dict:
    return {"epoch": epoch, "val_acc": val_acc, "val_acc_audio": val_acc / 2, "val_acc_visual": val_acc / 3,
            "reinit": reinit}


def final(epoch: int, val_acc: float, best: float, best_epoch: int) -> dict:
    return {**epoch_result(record(epoch, val_acc)), "best_val_acc": best, "best_epoch": best_epoch,
            "test_acc": 0.5, "test_f1": 0.4, "test_acc_audio": 0.3, "test_acc_visual": 0.2}


def test_complete_trial_gets_its_value_steps_and_attributes(make_bridge):
    bridge = make_bridge(ReinitAwarePruner(optuna.pruners.NopPruner(), final_step=2))
    config = bridge.suggest("ray-1")
    number = config["optuna_trial"]
    assert config["trial"]["epochs"] == 3 and config["trial"]["threads"] == 1
    for epoch, acc in enumerate([0.4, 0.6]):
        assert bridge.on_epoch("ray-1", epoch_result(record(epoch, acc, reinit=epoch == 1))) is False
    assert bridge.on_epoch("ray-1", epoch_result(record(1, 0.6))) is False  # Ray's duplicate: ignored
    bridge.on_epoch("ray-1", final(2, 0.5, best=0.6, best_epoch=1))
    bridge.on_trial_complete("ray-1", final(2, 0.5, best=0.6, best_epoch=1))
    t = bridge.study.trials[number]
    assert t.state == TrialState.COMPLETE and t.value == 0.6
    assert t.intermediate_values == {0: 0.4, 1: 0.6, 2: 0.5}
    assert t.user_attrs[REINIT_ATTR] == [1] and t.user_attrs["ray_trial_id"] == "ray-1"
    assert (t.user_attrs["best_epoch"], t.user_attrs["epochs_run"], t.user_attrs["val_acc_audio"]) == (1, 3, 0.3)
    assert t.user_attrs["test_acc"] == 0.5 and len(t.user_attrs["history"]) == 3
    assert t.user_attrs["config"] == config["trial"]


def test_pruned_crashed_and_interrupted_trials(make_bridge):
    """Only COMPLETE and PRUNED trials use up --trials; an interrupted trial comes back as a retry."""
    bridge = make_bridge(ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.9), final_step=2), budget=2)
    pruned = bridge.suggest("p")["optuna_trial"]
    assert bridge.on_epoch("p", epoch_result(record(0, 0.5))) is True  # the scheduler returns STOP
    bridge.on_trial_complete("p", {**epoch_result(record(0, 0.5)), "done": True})
    t = bridge.study.trials[pruned]
    assert t.state == TrialState.PRUNED and t.user_attrs["epochs_run"] == 1 and len(t.intermediate_values) == 1

    crashed = bridge.suggest("c")["optuna_trial"]
    bridge.on_error("c", "NonFiniteLoss: loss became nan at epoch 0, step 3; lower the lr")
    bridge.on_trial_complete("c", error=True)
    t = bridge.study.trials[crashed]
    assert t.state == TrialState.FAIL and t.user_attrs["error"].startswith("NonFiniteLoss: loss became nan")
    assert not t.user_attrs.get("interrupted")

    cut = bridge.suggest("i")
    bridge.on_trial_complete("i", None)  # stopped by Tune before it finished (Ctrl-C, --timeout)
    t = bridge.study.trials[cut["optuna_trial"]]
    assert t.state == TrialState.FAIL and t.user_attrs["interrupted"]
    retry = bridge.suggest("r")  # the failure and the interruption left the budget open: the cut trial comes back
    again = bridge.study.trials[retry["optuna_trial"]]
    assert again.user_attrs["retry_of"] == t.number and again.params == t.params
    assert retry["checkpoint"] is None or retry["checkpoint"]["key"] == f"trial-{t.number}"
    bridge.on_trial_complete("r", final(2, 0.5, best=0.6, best_epoch=1))
    assert bridge.study.trials[retry["optuna_trial"]].state == TrialState.COMPLETE
    assert bridge.suggest("next") == Searcher.FINISHED  # 1 pruned + 1 complete = --trials 2


def test_a_stop_keeps_what_arrived_before_it(make_bridge):
    """Ctrl-C / --timeout: a trial already pruned, or whose final result arrived, is stored as such;
    only a trial still training is cut (and queued again)."""
    stop = []
    bridge = make_bridge(ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.9), final_step=2),
                         stop_reason=lambda: stop[0] if stop else None)
    numbers = {name: bridge.suggest(name)["optuna_trial"] for name in ("pruned", "done", "running")}
    assert bridge.on_epoch("pruned", epoch_result(record(0, 0.5))) is True
    for epoch, acc in enumerate([0.95, 0.96]):
        bridge.on_epoch("done", epoch_result(record(epoch, acc)))
    bridge.on_epoch("running", epoch_result(record(0, 0.95)))
    stop.append("stopped by Ctrl-C")
    bridge.on_trial_complete("pruned", {**epoch_result(record(0, 0.5)), "error": "KeyboardInterrupt"})
    bridge.on_trial_complete("done", final(2, 0.97, best=0.97, best_epoch=2))
    bridge.on_trial_complete("running", {**epoch_result(record(0, 0.95)), "error": "KeyboardInterrupt"})
    states = {name: bridge.study.trials[n] for name, n in numbers.items()}
    assert states["pruned"].state == TrialState.PRUNED
    assert states["done"].state == TrialState.COMPLETE and states["done"].value == 0.97
    assert states["running"].state == TrialState.FAIL and states["running"].user_attrs["interrupted"]


def test_failures_stop_the_search_after_the_budget_naming_the_common_error(make_bridge):
    bridge = make_bridge(optuna.pruners.NopPruner(), max_failed=3)
    for i, error in enumerate(["RuntimeError: data file missing", "ValueError: bad", "RuntimeError: data file missing"]):
        bridge.suggest(f"t{i}")
        assert bridge.stop_reason() is None
        bridge.on_trial_complete(f"t{i}", {"error": error})
    assert bridge.stop_reason() == ("3 trials failed (--max-failed-trials 3); most common error (2x): "
                                    "RuntimeError: data file missing")
    assert bridge.suggest("more") == Searcher.FINISHED


def test_the_same_error_in_a_row_stops_sooner_with_advice(make_bridge):
    bridge = make_bridge(optuna.pruners.NopPruner(), budget=100, max_failed=50)
    for i in range(5):
        assert bridge.stop_reason() is None
        bridge.suggest(f"t{i}")
        bridge.on_trial_complete(f"t{i}", {"error": f"OutOfMemoryError: CUDA out of memory at epoch {i}"})
    assert bridge.stop_reason().startswith("5 trials in a row failed with: OutOfMemoryError: CUDA out of memory")
    assert "--concurrent" in bridge.stop_reason() and "--gpus-per-trial" in bridge.stop_reason()


def test_a_lost_storage_halts_the_search_instead_of_raising_into_tune(make_bridge, monkeypatch):
    bridge = make_bridge(optuna.pruners.NopPruner())
    bridge.suggest("a")

    def down(*args, **kwargs):
        raise StorageUnavailable("storage sqlite:///x unreachable for 120 s (database is locked)")

    monkeypatch.setattr(optuna.Trial, "report", down)
    assert bridge.on_epoch("a", epoch_result(record(0, 0.5))) is True  # STOP, no exception
    assert bridge.stop_reason().startswith("storage sqlite:///x unreachable")
    assert bridge.suggest("b") == Searcher.FINISHED
    bridge.on_trial_complete("a", None)  # no write is tried once the storage is lost
    assert bridge.close_open("halted") == 0


def test_finished_trials_leave_no_checkpoint_and_cut_ones_keep_it(make_bridge, tmp_path):
    store = CheckpointStore(str(tmp_path / "ckpt"))
    bridge = make_bridge(optuna.pruners.NopPruner(), checkpoints=store)
    configs = {name: bridge.suggest(name) for name in ("done", "failed", "cut")}
    for name, config in configs.items():
        assert config["checkpoint"] == {"root": store.root, "key": f"trial-{config['optuna_trial']}", "every": 1,
                                        "owner": None}
        store.path(config["checkpoint"]["key"]).mkdir(parents=True)
    bridge.on_trial_complete("done", final(2, 0.5, best=0.6, best_epoch=1))
    bridge.on_trial_complete("failed", {"error": "RuntimeError: x"})
    bridge.on_trial_complete("cut", None)
    assert store.keys() == [configs["cut"]["checkpoint"]["key"]]
    retry = bridge.suggest("retry")  # the retry resumes from the cut trial's folder
    assert retry["checkpoint"]["key"] == configs["cut"]["checkpoint"]["key"]


def test_a_trial_another_driver_closed_just_before_the_tell_is_dropped_quietly(make_bridge, tmp_path):
    """Its attributes were written while it ran, then another driver retired it: study.tell's
    "Cannot tell a FAIL trial" is a normal outcome (never an exception into Ray), and its
    checkpoint stays for the other driver's retry."""
    from drltune.search.study import retire

    store = CheckpointStore(str(tmp_path / "ckpt"))
    bridge = make_bridge(optuna.pruners.NopPruner(), checkpoints=store)
    config = bridge.suggest("a")
    store.path(config["checkpoint"]["key"]).mkdir(parents=True)
    other = optuna.load_study(study_name=bridge.study.study_name,
                              storage=open_storage(f"sqlite:///{tmp_path}/s.db", heartbeat=True))
    bridge.before_tell = lambda trial, state, attrs: retire(other, trial._trial_id, "interrupted: cut off", 2)
    bridge.on_trial_complete("a", final(2, 0.5, best=0.6, best_epoch=1))
    t = bridge.study.trials[config["optuna_trial"]]
    assert t.state == TrialState.FAIL and t.user_attrs["interrupted"] is True
    assert store.keys() == [config["checkpoint"]["key"]]


def test_worker_error_message_is_the_last_line_of_the_traceback():
    class FakeTrial:
        def get_error(self):
            return ("Failure # 1 (occurred at 2026-01-01)\nray::ImplicitFunc.train() (pid=1)\n"
                    "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    raise E\n"
                    "drltune.train.trainer.NonFiniteLoss: loss became nan at epoch 2, step 0; lower the lr\n")

    assert error_message(FakeTrial()) == ("drltune.train.trainer.NonFiniteLoss: loss became nan at epoch 2, "
                                          "step 0; lower the lr")


def test_a_resumed_trial_is_recorded_and_judged_with_its_restored_epochs(make_bridge):
    """The retry's first result carries the epochs its checkpoint restored (0 and 1, with a DR
    re-init after 1): the stored record covers all of them, and the dip at epoch 2 is inside the
    re-init's grace window, so the retry is not pruned there."""
    from drltune.search.trainable import RESTORED

    bridge = make_bridge(ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.9), final_step=5))
    number = bridge.suggest("retry")["optuna_trial"]
    restored = [record(0, 0.5), record(1, 0.55, reinit=True)]
    first = {**epoch_result(record(2, 0.3)), RESTORED: json.dumps(restored)}
    assert bridge.on_epoch("retry", first) is False  # in grace: the re-init before the cut counts
    assert bridge.on_epoch("retry", first) is False  # Ray's duplicate: ignored
    bridge.on_epoch("retry", final(3, 0.7, best=0.7, best_epoch=3))
    bridge.on_trial_complete("retry", {**final(3, 0.7, best=0.7, best_epoch=3), "resumed_from_epoch": 1})
    t = bridge.study.trials[number]
    assert t.state == TrialState.COMPLETE and t.intermediate_values == {0: 0.5, 1: 0.55, 2: 0.3, 3: 0.7}
    assert [r["epoch"] for r in t.user_attrs["history"]] == [0, 1, 2, 3] and t.user_attrs["epochs_run"] == 4
    assert t.user_attrs[REINIT_ATTR] == [1] and t.user_attrs["resumed_from_epoch"] == 1


def test_a_resumed_trial_below_the_others_is_pruned_on_its_whole_history(make_bridge):
    bridge = make_bridge(ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.9), final_step=5))
    number = bridge.suggest("retry")["optuna_trial"]
    first = {**epoch_result(record(2, 0.3)), "restored": json.dumps([record(0, 0.5), record(1, 0.55)])}
    assert bridge.on_epoch("retry", first) is True
    bridge.on_trial_complete("retry", {**epoch_result(record(2, 0.3)), "done": True})
    t = bridge.study.trials[number]
    assert t.state == TrialState.PRUNED and t.user_attrs["epochs_run"] == 3
    assert (t.user_attrs["best_epoch"], t.user_attrs["val_acc_audio"]) == (1, 0.275)  # the best epoch was restored


def test_a_trial_is_beaten_until_its_outcome_is_stored(make_bridge, monkeypatch):
    """The heartbeat beats `live` (runner.py's list): a trial leaves it only after the writes that
    close it, and before its progress line, which counts `live` as running."""
    running_at_outcome = []
    bridge = make_bridge(optuna.pruners.NopPruner(), on_outcome=lambda o: running_at_outcome.append(len(bridge.live)))
    beaten = lambda: [t.trial._trial_id for t in list(bridge.live.values())]  # noqa: E731 (as runner.py's)
    numbers = {name: bridge.suggest(name)["optuna_trial"] for name in ("done", "failed", "cut")}
    ids = {name: bridge.study.trials[n]._trial_id for name, n in numbers.items()}
    backend, closing = bridge.study._storage._backend, {}  # every state change, retire's too, ends here
    store_state = backend.change_trial_state

    def set_state(trial_id, state, values=None, user_attrs=None):
        closing[trial_id] = trial_id in beaten()
        return store_state(trial_id, state, values, user_attrs)

    monkeypatch.setattr(backend, "change_trial_state", set_state)
    bridge.on_epoch("done", epoch_result(record(0, 0.5)))
    bridge.on_trial_complete("done", final(2, 0.5, best=0.6, best_epoch=1))
    bridge.on_trial_complete("failed", {"error": "RuntimeError: x"})
    bridge.on_trial_complete("cut", None)
    assert closing == {ids["done"]: True, ids["failed"]: True, ids["cut"]: True}
    assert running_at_outcome == [2, 1, 0] and bridge.live == {}
