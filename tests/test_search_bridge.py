"""The Ray<->Optuna bridge without a Ray runtime: what each way a trial ends leaves in the study."""
from __future__ import annotations

import optuna
import yaml
from optuna.trial import TrialState
from ray.tune.search import Searcher

from drltune.config import TrialConfig
from drltune.search.bridge import OptunaBridge, error_message
from drltune.search.pruning import REINIT_ATTR, ReinitAwarePruner
from drltune.search.space import parse_space
from drltune.search.trainable import epoch_result

optuna.logging.set_verbosity(optuna.logging.WARNING)
SPACE = "space: {lr: {low: 1.0e-3, high: 1.0e-1, log: true}}\nmethods: {baseline: {}, dr: {alpha: {low: 1, high: 3}}}"


def make_bridge(pruner: optuna.pruners.BasePruner, budget: int = 10) -> OptunaBridge:
    study = optuna.create_study(direction="maximize", pruner=pruner)
    space = parse_space(yaml.safe_load(SPACE), max_epochs=3)
    return OptunaBridge(study, space, TrialConfig(epochs=3, encoder_width=4), budget, threads=1)


def record(epoch: int, val_acc: float, reinit: bool = False) -> dict:
    return {"epoch": epoch, "val_acc": val_acc, "val_acc_audio": val_acc / 2, "val_acc_visual": val_acc / 3,
            "reinit": reinit}


def final(epoch: int, val_acc: float, best: float, best_epoch: int) -> dict:
    return {**epoch_result(record(epoch, val_acc)), "best_val_acc": best, "best_epoch": best_epoch,
            "test_acc": 0.5, "test_f1": 0.4, "test_acc_audio": 0.3, "test_acc_visual": 0.2}


def test_complete_trial_gets_its_value_steps_and_attributes():
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


def test_pruned_crashed_and_interrupted_trials():
    bridge = make_bridge(ReinitAwarePruner(optuna.pruners.ThresholdPruner(lower=0.9), final_step=2), budget=3)
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
    assert bridge.suggest("next") == Searcher.FINISHED  # the budget of 3 is spent
    retry = bridge.study.ask()  # the interrupted trial's parameters are queued first
    assert retry.user_attrs["retry_of"] == t.number


def test_worker_error_message_is_the_last_line_of_the_traceback():
    class FakeTrial:
        def get_error(self):
            return ("Failure # 1 (occurred at 2026-01-01)\nray::ImplicitFunc.train() (pid=1)\n"
                    "Traceback (most recent call last):\n  File \"x.py\", line 3, in f\n    raise E\n"
                    "drltune.train.trainer.NonFiniteLoss: loss became nan at epoch 2, step 0; lower the lr\n")

    assert error_message(FakeTrial()) == ("drltune.train.trainer.NonFiniteLoss: loss became nan at epoch 2, "
                                          "step 0; lower the lr")
