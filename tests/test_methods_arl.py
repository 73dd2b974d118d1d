"""ARL's modality weights, its loss and its GradScale on the encoders, pinned by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.methods.arl import arl_weights
from drltune.train import Trainer


def _entropy2(x: float) -> float:
    """Entropy of softmax([x, 0])."""
    p = 1 / (1 + math.exp(-x))
    return -(p * math.log(p) + (1 - p) * math.log(1 - p))


def test_weights_pair_each_modality_with_the_others_magnitude():
    logits_a = torch.tensor([[2.0, 0.0], [0.0, 2.0]])  # mean |logit| per class 1, 1 -> magnitude 2
    logits_v = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # magnitude 1
    m_a, m_v = 2 / 3, 1 / 3
    h_a, h_v = _entropy2(2.0), _entropy2(1.0)
    h_a, h_v = h_a / (h_a + h_v), h_v / (h_a + h_v)  # both above the 0.3 floor
    inv_a, inv_v = (1 / h_a) / (1 / h_a + 1 / h_v), (1 / h_v) / (1 / h_a + 1 / h_v)
    za, zv = 8 * m_v * inv_a, 8 * m_a * inv_v
    w_a = math.exp(za) / (math.exp(za) + math.exp(zv))
    assert arl_weights(logits_a, logits_v, temperature=8.0) == pytest.approx((w_a, 1 - w_a), rel=1e-5)


def test_entropy_floor_clamps_the_confident_modality():
    logits_a = torch.tensor([[20.0, 0.0]])  # near-zero entropy -> normalised ~0 -> clamped to 0.45
    logits_v = torch.tensor([[0.0, 0.0]])  # magnitude 0
    h_v = 1.0  # normalised entropy of visual ~ 1
    inv_a, inv_v = (1 / 0.45) / (1 / 0.45 + 1 / h_v), (1 / h_v) / (1 / 0.45 + 1 / h_v)
    za, zv = 2.0 * 0.0 * inv_a, 2.0 * 1.0 * inv_v  # m_a = 1, m_v = 0
    w_a = math.exp(za) / (math.exp(za) + math.exp(zv))
    assert arl_weights(logits_a, logits_v, 2.0, entropy_floor=0.45) == pytest.approx((w_a, 1 - w_a), rel=1e-4)


def _grads(trainer, epoch_seen_by_hooks: int):
    model, method = trainer.model, trainer.method
    method.epoch = epoch_seen_by_hooks
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    model.train()
    model.zero_grad()
    out = model(audio, visual)
    F.cross_entropy(out.logits, labels).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def test_gradscale_multiplies_each_encoders_grads_by_one_plus_w(tiny_config):
    trainer = Trainer(tiny_config(method="arl", params={"start": 0}))
    trainer.method.setup()
    trainer.method.setup()  # a second setup must not stack a second scaling hook
    trainer.method.weights = {"audio": 0.25, "visual": 0.6}
    plain = _grads(trainer, epoch_seen_by_hooks=0)  # epoch <= start: identity
    scaled = _grads(trainer, epoch_seen_by_hooks=1)
    for name, g in scaled.items():
        factor = 1.25 if name.startswith("audio_net.") else 1.6 if name.startswith("visual_net.") else 1.0
        tol = 1e-4 * plain[name].abs().max().item()  # float noise of a deep conv backward
        assert torch.allclose(g, plain[name] * factor, rtol=1e-3, atol=tol), name


def test_loss_uses_gamma_after_start_and_updates_the_weights(tiny_config):
    trainer = Trainer(tiny_config(method="arl", params={"start": 1, "gamma": 4.0}))
    method, model = trainer.method, trainer.model
    method.setup()
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    out = model(audio, visual)
    la, lv = model.fusion.auxiliary_logits(out.feat_a, out.feat_v)
    ce_f, ce_uni = F.cross_entropy(out.logits, labels), F.cross_entropy(la, labels) + F.cross_entropy(lv, labels)
    assert method.loss(out, labels, epoch=1).item() == pytest.approx((ce_f + ce_uni).item(), rel=1e-5)
    assert method.weights == {"audio": 0.5, "visual": 0.5}  # warm-up: not estimated yet
    assert method.loss(out, labels, epoch=2).item() == pytest.approx((ce_f + 4.0 * ce_uni).item(), rel=1e-5)
    assert (method.weights["audio"], method.weights["visual"]) == pytest.approx(arl_weights(la, lv, 8.0))
    record = method.on_epoch_end(2)
    assert record["arl_weight_audio"] == pytest.approx(method.weights["audio"])


def test_released_mode_keeps_the_constant_half_weights(tiny_config):
    trainer = Trainer(tiny_config(method="arl", params={"start": 0, "weight_mode": "released"}))
    result = trainer.fit()
    assert result.history[-1]["arl_weight_audio"] == result.history[-1]["arl_weight_visual"] == 0.5


def test_after_backward_clips_the_grad_norm(tiny_config):
    trainer = Trainer(tiny_config(method="arl", params={"grad_clip": 1e-3}))
    trainer.method.setup()
    _grads(trainer, 0)
    trainer.method.after_backward(None, None, 0)
    norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in trainer.model.parameters()]))
    assert norm.item() == pytest.approx(1e-3, rel=1e-3)
