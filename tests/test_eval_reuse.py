"""The evaluation pass is reused by the DR diagnosis only while the weights are unchanged."""
from __future__ import annotations

import numpy as np
import torch

from drltune.train import Trainer


def _counting(trainer: Trainer) -> list[int]:
    calls: list[int] = []
    real = trainer._forward_split_uncached

    def counted(split):
        calls.append(id(split))
        return real(split)

    trainer._forward_split_uncached = counted
    return calls


def test_diagnosis_reuses_the_epochs_validation_pass(tiny_config):
    trainer = Trainer(tiny_config(method="dr", epochs=2, params={"reinit_epoch": 1, "kmeans_n_init": 1}))
    calls = _counting(trainer)
    result = trainer.fit()
    assert result.history[1]["reinit"] is True
    val, train, test = id(trainer.data.val), id(trainer.data.train), id(trainer.data.test)
    # epoch 0: val; epoch 1: val, then the diagnosis needs only train; the end: test
    assert calls == [val, val, train, test]


def test_any_weight_change_forces_a_fresh_pass(tiny_config):
    trainer = Trainer(tiny_config(method="dr", params={"reinit_epoch": 1, "kmeans_n_init": 1}))
    trainer.method.setup()
    trainer.train_epoch(0)  # away from the initial weights, so that a blend changes them
    calls = _counting(trainer)
    val = trainer.data.val
    first = trainer.features(val)[0].copy()
    trainer.evaluate(val)
    assert len(calls) == 1  # same weights: remembered
    trainer.method.reinit("audio", 0.5)  # an in-place blend of the encoder
    changed = trainer.features(val)[0]
    assert len(calls) == 2 and not np.array_equal(first, changed)
    state = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    trainer.train_epoch(0)  # optimiser steps and BN statistics
    trainer.features(val)
    assert len(calls) == 3
    trainer.model.load_state_dict(state)  # back to the blended weights: a pass, equal to before
    np.testing.assert_array_equal(trainer.features(val)[0], changed)
    assert len(calls) == 4
    with torch.no_grad():
        trainer.model.fusion.fc_out.bias.add_(1.0)  # the head alone changes the logits
    trainer.evaluate(val)
    assert len(calls) == 5


def test_cpu_evaluates_at_the_training_batch_size(tiny_config):
    trainer = Trainer(tiny_config(batch_size=8))
    assert trainer.eval_batch_size() == 8
