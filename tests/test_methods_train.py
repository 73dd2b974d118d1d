"""Each peer method trains on the built-in data on CPU, changes training measurably and resumes exactly."""
from __future__ import annotations

import math

import pytest
import torch
from test_method_contract import assert_resumes_exactly, final_weights

from drltune.config import TrialConfig
from drltune.errors import DrltuneError
from drltune.methods import METHODS
from drltune.resolve import resolve
from drltune.train import Trainer

# method -> (params, its two per-modality metrics, what their epoch means must satisfy)
PEERS = {
    "agm": ({"alpha": 0.5}, ("agm_coeff_audio", "agm_coeff_visual"),
            lambda a, v: a != v),  # one encoder boosted relative to the other
    "ogm_ge": ({"alpha": 0.8}, ("ogm_coeff_audio", "ogm_coeff_visual"),
               lambda a, v: min(a, v) < 1.0),  # some step slowed the dominant encoder
    "pmr": ({"alpha": 2.0}, ("pmr_coeff_audio", "pmr_coeff_visual"),
            lambda a, v: a + v == pytest.approx(2.0)),  # every step: alpha for exactly one modality
    "arl": ({"start": 0, "gamma": 4.0}, ("arl_weight_audio", "arl_weight_visual"),
            lambda a, v: a + v == pytest.approx(1.0) and a != v),  # softmax weights, asymmetric
    "mla": ({}, ("loss_audio", "loss_visual"),
            lambda a, v: a != v and min(a, v) > 0),  # each modality's own CE through the shared head
    "mmpareto": ({}, ("cos_audio", "cos_visual"),
                 lambda a, v: a != v and -1.0 <= min(a, v) and max(a, v) <= 1.0),  # per-encoder gradient cosines
    "inforeg": ({}, ("inforeg_beta_audio", "inforeg_beta_visual"),
                lambda a, v: max(a, v) > 0),  # the leading encoder was pulled back
    "gblending": ({"estimate_epochs": 2, "super_epoch": 1}, ("gblend_weight_audio", "gblend_weight_visual"),
                  lambda a, v: a != v and 0 < a + v < 1),  # estimated, not the equal start; fused gets the rest
}


@pytest.mark.parametrize("fusion", ["concat", "gated"])
@pytest.mark.parametrize("method", sorted(PEERS))
def test_method_trains_and_differs_from_the_baseline(tiny_config, method, fusion):
    params, keys, holds = PEERS[method]
    trainer = Trainer(tiny_config(method=method, fusion=fusion, params=params))
    result = trainer.fit()
    baseline = Trainer(tiny_config(method="baseline", fusion=fusion))
    baseline.fit()

    assert not torch.equal(final_weights(trainer), final_weights(baseline)), "the method changed nothing"
    last = result.history[-1]
    assert set(METHODS.get(method).metric_keys) <= set(last)
    for key in keys:
        assert last[key] is not None and math.isfinite(last[key])
    assert holds(last[keys[0]], last[keys[1]]), last
    assert 0.0 <= result.test_acc <= 1.0


@pytest.mark.parametrize("method", sorted(PEERS))
def test_unimodal_runs_are_rejected(method):
    with pytest.raises(DrltuneError, match="modality: .* use modality both"):
        resolve(TrialConfig(method=method, modality="visual"))


@pytest.mark.parametrize("method", sorted(PEERS))
def test_resumed_trial_matches_uninterrupted(tiny_config, tmp_path, method):
    cfg = tiny_config(epochs=3, method=method, params=PEERS[method][0], augment=True)
    whole = Trainer(cfg)
    assert_resumes_exactly(cfg, tmp_path, whole, whole.fit())
