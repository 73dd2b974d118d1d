"""OGM-GE's scores, coefficients and gradient modulation, pinned on hand-made tensors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drltune.config import TrialConfig
from drltune.data.batches import to_device_batch
from drltune.errors import DrltuneError
from drltune.methods.common import true_class_score
from drltune.methods.ogm_ge import modulate_, ogm_coefficients
from drltune.resolve import resolve
from drltune.train import Trainer


def test_true_class_score_sums_the_true_class_probabilities():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, 0.0]])
    assert true_class_score(logits, torch.tensor([0, 1])) == pytest.approx(0.75 + 0.5)


def test_coefficients_slow_only_the_dominant_modality():
    # audio twice as confident: rho_a = 2 -> k_a = 1 - tanh(0.8 * 2), visual untouched
    assert ogm_coefficients(6.0, 3.0, 0.8) == pytest.approx((1 - math.tanh(1.6), 1.0))
    # visual three times as confident: rho_v = 3 -> k_v = 1 - tanh(0.5 * 3)
    assert ogm_coefficients(2.0, 6.0, 0.5) == pytest.approx((1.0, 1 - math.tanh(1.5)))
    # a tie falls in the repo's else-branch: audio is slowed with rho_a = 1
    assert ogm_coefficients(4.0, 4.0, 0.8) == pytest.approx((1 - math.tanh(0.8), 1.0))


def test_modulate_scales_and_adds_noise_with_the_unscaled_std():
    g = torch.tensor([[1.0, -2.0], [3.0, 0.5]])
    scaled = g.clone()
    modulate_([scaled], 0.25, noise=False)
    assert torch.equal(scaled, g * 0.25)

    noised = g.clone()
    torch.manual_seed(7)
    modulate_([noised], 0.25, noise=True)
    torch.manual_seed(7)
    expected = g * 0.25 + torch.randn_like(g) * (g.std() + 1e-8)
    assert torch.allclose(noised, expected)


def _backward(trainer):
    data, model = trainer.data.train, trainer.model
    audio, visual, labels = to_device_batch(data, list(range(16)), trainer.device, False, None)
    model.train()
    out = model(audio, visual)
    model.zero_grad()
    F.cross_entropy(out.logits, labels).backward()
    return out, labels


@pytest.mark.parametrize("variant", ["OGM", "OGM_GE"])
def test_after_backward_modulates_the_dominant_encoders_conv_grads(tiny_config, variant):
    trainer = Trainer(tiny_config(method="ogm_ge", params={"alpha": 0.8, "variant": variant}))
    method, model = trainer.method, trainer.model
    method.setup()
    out, labels = _backward(trainer)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    logits_a, logits_v = model.unimodal_logits(out)
    k_a, k_v = ogm_coefficients(true_class_score(logits_a, labels), true_class_score(logits_v, labels), 0.8)
    method.after_backward(out, labels, epoch=0)

    for modality, k in (("audio", k_a), ("visual", k_v)):
        for name, p in model.encoder_parameters(modality):
            if p.dim() != 4:  # BN affine grads are outside the official scope
                assert torch.equal(p.grad, before[name]), name
            elif variant == "OGM":
                assert torch.allclose(p.grad, before[name] * k), name
            else:  # GE: noise on both encoders, with the std of the unscaled grad
                noise = p.grad - before[name] * k
                assert noise.abs().sum() > 0, name
                assert noise.std().item() == pytest.approx(before[name].std().item(), rel=0.6), name
    for name, p in model.fusion.named_parameters():
        assert torch.equal(p.grad, before[f"fusion.{name}"])
    assert min(k_a, k_v) < 1.0 and max(k_a, k_v) == 1.0


def test_outside_the_window_grads_are_untouched(tiny_config):
    trainer = Trainer(tiny_config(method="ogm_ge", params={"modulation_starts": 1, "modulation_ends": 2}))
    trainer.method.setup()
    out, labels = _backward(trainer)
    before = {n: p.grad.clone() for n, p in trainer.model.named_parameters()}
    trainer.method.after_backward(out, labels, epoch=3)
    assert all(torch.equal(p.grad, before[n]) for n, p in trainer.model.named_parameters())
    assert trainer.method.on_epoch_end(3)["ogm_coeff_audio"] == 1.0


def test_empty_window_is_rejected():
    with pytest.raises(DrltuneError, match="modulation_starts"):
        resolve(TrialConfig(method="ogm_ge", params={"modulation_starts": 5, "modulation_ends": 4}))
