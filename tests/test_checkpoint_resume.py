"""A trial cut off after epoch k and resumed from its per-epoch checkpoint ends exactly like an
uninterrupted one, including across DR re-initialisations."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

from drltune.errors import DrltuneError
from drltune.train import Trainer
from drltune.train.checkpoint import checkpoint_path


class Interrupted(Exception):
    pass


def _stop_after(k: int):
    def report(epoch, record):
        if epoch == k:
            raise Interrupted
    return report


def _comparable(result):
    history = [{k: v for k, v in r.items() if k != "seconds"} for r in result.history]
    return (history, result.best_val_acc, result.best_epoch, result.test_acc, result.test_f1,
            result.test_acc_audio, result.test_acc_visual)


def _model_equal(a: Trainer, b: Trainer) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


DR = {"method": "dr", "params": {"reinit_epoch": 2, "reinit_num": 2, "alpha": 3.0, "kmeans_n_init": 1}}


@pytest.mark.parametrize("overrides, stop_at", [
    (DR, 1),  # the next re-init (epoch 2) falls after the interruption
    (DR, 2),  # interrupted right after a re-init
    ({"method": "baseline", "augment": True, "lr_schedule": "step", "lr_step": 1, "lr_gamma": 0.5}, 0),
])
def test_resumed_trial_matches_uninterrupted(tiny_config, tmp_path, overrides, stop_at):
    cfg = tiny_config(epochs=4, **overrides)
    whole = Trainer(cfg)
    expected = whole.fit()

    with pytest.raises(Interrupted):
        Trainer(cfg).fit(report=_stop_after(stop_at), checkpoint_dir=tmp_path)
    seen = []
    resumed = Trainer(cfg)
    result = resumed.fit(report=lambda epoch, rec: seen.append(epoch), checkpoint_dir=tmp_path)

    assert seen == list(range(stop_at + 1, 4)), "resume continues after the last completed epoch"
    assert [r["epoch"] for r in resumed.restored] == list(range(stop_at + 1)), "the skipped epochs, for the search"
    assert _comparable(result) == _comparable(expected)
    assert _model_equal(resumed, whole)
    if overrides is DR:
        assert [r["reinit"] for r in result.history] == [False, False, True, False]
        assert resumed.method.count == whole.method.count == 1


def test_checkpoint_is_weights_only_atomic_and_one_model_per_save(tiny_config, tmp_path):
    """Each save rewrites the trainer state; the selected weights only when the selection moved
    (one file, named by its epoch); DR's initial weights are rebuilt from the seed, never stored."""
    cfg = tiny_config(epochs=4, **DR)
    trainer = Trainer(cfg)
    best_files = []
    trainer.fit(checkpoint_dir=tmp_path, report=lambda epoch, rec: best_files.append(
        sorted(p.name for p in trainer.last_checkpoint.files if p.name != checkpoint_path(tmp_path).name)))
    names = sorted(p.name for p in tmp_path.iterdir())
    state = torch.load(checkpoint_path(tmp_path), weights_only=True)
    assert names == sorted([checkpoint_path(tmp_path).name, f"best_state-{state['best_epoch']}.pt"])  # no temp file
    assert "initial" not in state["method"] and "best_state" not in state
    improved = [bool(files) for files in best_files]
    vals = [r["val_acc"] for r in Trainer(cfg).fit().history]
    assert improved == [v > max(vals[:i], default=-1.0) for i, v in enumerate(vals)]
    model_bytes = sum(t.numel() * t.element_size() for t in trainer.model.state_dict().values())
    assert checkpoint_path(tmp_path).stat().st_size < 3.2 * model_bytes  # model + momentum, not four models


def test_checkpoint_of_another_config_or_corrupt_is_refused(tiny_config, tmp_path):
    Trainer(tiny_config(epochs=1)).fit(checkpoint_dir=tmp_path)
    with pytest.raises(DrltuneError, match="another config.*lr"):
        Trainer(tiny_config(epochs=1, lr=0.5)).fit(checkpoint_dir=tmp_path)
    Trainer(tiny_config(epochs=1)).fit(checkpoint_dir=tmp_path / "owned", checkpoint_owner="study-a")
    with pytest.raises(DrltuneError, match="belongs to another study"):
        Trainer(tiny_config(epochs=1)).fit(checkpoint_dir=tmp_path / "owned", checkpoint_owner="study-b")
    checkpoint_path(tmp_path).write_bytes(b"\x00junk")
    with pytest.raises(DrltuneError, match="cannot be read"):
        Trainer(tiny_config(epochs=1)).fit(checkpoint_dir=tmp_path)


class Cut(BaseException):  # not an Exception: the trainable must not report it as the trial's error
    pass


def test_a_resumed_search_trial_reports_its_restored_epochs_first(tiny_config, tmp_path, monkeypatch):
    """The trainer reports only the epochs it trains; the search trainable's first result of a
    resumed trial carries the ones its checkpoint restored, so that the driver records them all."""
    import json

    from ray import tune

    from drltune.search import trainable
    from drltune.search.trainable import RESTORED, run_trial

    cfg = tiny_config(epochs=4)
    config = {"trial": cfg.to_dict(), "checkpoint": {"root": str(tmp_path), "key": "trial-0", "every": 1}}
    results = []

    def cut_after_epoch_1(result):
        results.append(result)
        if result["epoch"] == 1:
            raise Cut

    monkeypatch.setattr(trainable, "_node", lambda: {})  # outside Ray: asking for the node would start one
    monkeypatch.setattr(tune, "report", cut_after_epoch_1)
    with pytest.raises(Cut):
        run_trial(config)
    first_run = [{k: v for k, v in json.loads(r["record"]).items() if k != "checkpoint_s"} for r in results]
    results.clear()
    monkeypatch.setattr(tune, "report", results.append)
    run_trial(config)
    assert [r["epoch"] for r in results] == [2, 3] and RESTORED not in results[1]
    assert json.loads(results[0][RESTORED]) == first_run and results[1]["resumed_from_epoch"] == 1

    results.clear()
    run_trial(config)  # cut after its last checkpoint, before the final result: nothing left to train
    assert [r["epoch"] for r in results] == [3] and results[0]["resumed_from_epoch"] == 3
    assert [r["epoch"] for r in json.loads(results[0][RESTORED])] == [0, 1, 2]


KILL_SCRIPT = """
import sys, yaml
from drltune.config import TrialConfig
from drltune.train import Trainer
Trainer(TrialConfig.from_dict(yaml.safe_load(sys.argv[1]))).fit(checkpoint_dir=sys.argv[2])
"""


def test_process_killed_inside_dr_reinit_resumes_exactly(tiny_config, tmp_path, monkeypatch):
    """SIGKILL of the training process in the middle of DR's re-initialisation at epoch 2; the
    resumed run (epoch 2 redone from the epoch-1 checkpoint) equals an uninterrupted one."""
    cfg = tiny_config(epochs=4, threads=1, **DR)
    fired = tmp_path / "fired"
    env = {**os.environ, "DRLTUNE_FAULTS": f"dr_reinit:2:kill:{fired}"}
    proc = subprocess.run([sys.executable, "-c", KILL_SCRIPT, yaml.safe_dump(cfg.to_dict()), str(tmp_path / "ck")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL and fired.exists(), proc.stderr[-2000:]

    monkeypatch.setenv("DRLTUNE_FAULTS", f"dr_reinit:2:kill:{fired}")  # already fired: not again
    seen = []
    result = Trainer(cfg).fit(report=lambda epoch, rec: seen.append(epoch), checkpoint_dir=tmp_path / "ck")
    monkeypatch.delenv("DRLTUNE_FAULTS")
    assert seen == [2, 3]
    assert _comparable(result) == _comparable(Trainer(cfg).fit())


@pytest.mark.parametrize("action, error", [("nan", "loss became nan at epoch 1"), ("raise", "injected fault")])
def test_injected_faults_surface_as_errors(tiny_config, monkeypatch, action, error):
    from drltune.train import NonFiniteLoss

    monkeypatch.setenv("DRLTUNE_FAULTS", f"epoch_start:1:{action}")
    seen = []
    with pytest.raises(NonFiniteLoss if action == "nan" else RuntimeError, match=error):
        Trainer(tiny_config(epochs=3)).fit(report=lambda epoch, rec: seen.append(epoch))
    assert seen == [0], "the trial stops at the faulty epoch instead of wasting the others"
