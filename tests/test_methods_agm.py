"""AGM's Shapley logits, scores, coefficients and gradient scaling, pinned by hand."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.methods.agm import agm_coefficients, agm_score, shapley_logits
from drltune.train import Trainer


def test_shapley_logits_both_forms():
    full, pad_a, pad_v = torch.tensor([[4.0]]), torch.tensor([[1.0]]), torch.tensor([[3.0]])
    m_a, m_v = shapley_logits(full, pad_a, pad_v, "agm")
    assert (m_a.item(), m_v.item()) == (0.5 * (4 - 1 + 3), 0.5 * (4 - 3 + 1))
    m_a, m_v = shapley_logits(full, pad_a, pad_v, "balancemm")
    assert (m_a.item(), m_v.item()) == (0.5 * (4 - 1), 0.5 * (4 - 3))


def test_score_is_mean_negative_log_true_probability_with_floor():
    logits = torch.tensor([[math.log(3.0), 0.0], [0.0, -100.0]])
    assert agm_score(logits, torch.tensor([0, 1])) == pytest.approx((-math.log(0.75) - math.log(1e-8)) / 2)


def test_coefficients_boost_the_lagging_and_slow_the_leading_modality():
    # first step: running means 0 -> optimal ratio 1; audio loss 0.5, visual 1.5 -> r_a = e^-1, r_v = e^1
    k = agm_coefficients({"audio": 0.5, "visual": 1.5}, {"audio": 0.0, "visual": 0.0}, alpha=0.1)
    assert k["audio"] == pytest.approx(math.exp(0.1 * (1 - math.exp(-1.0))))
    assert k["visual"] == pytest.approx(math.exp(0.1 * (1 - math.e)))
    # the exponent is capped at 7
    k = agm_coefficients({"audio": 0.0, "visual": 0.0}, {"audio": 0.0, "visual": 10.0}, alpha=1.0)
    assert k["visual"] == pytest.approx(math.exp(7.0))


def _step(trainer):
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    model = trainer.model
    model.train()
    model.zero_grad()
    out = model(audio, visual)
    F.cross_entropy(out.logits, labels).backward()
    return out, labels, (audio, visual)


def test_input_padding_runs_eval_mode_passes_on_zeroed_inputs(tiny_config):
    trainer = Trainer(tiny_config(method="agm"))
    trainer.method.setup()
    out, _, (audio, visual) = _step(trainer)
    full, pad_a, pad_v = trainer.method.padded_logits(out)
    model = trainer.model
    assert model.training, "the padded passes must hand the model back in train mode"
    model.eval()
    with torch.no_grad():
        assert torch.allclose(full, model(audio, visual).logits, atol=1e-5)
        assert torch.allclose(pad_a, model(torch.zeros_like(audio), visual).logits, atol=1e-5)
        assert torch.allclose(pad_v, model(audio, torch.zeros_like(visual)).logits, atol=1e-5)


def test_after_backward_scales_non_1d_encoder_grads(tiny_config):
    trainer = Trainer(tiny_config(method="agm", params={"alpha": 0.5, "padding": "feature"}))
    method, model = trainer.method, trainer.model
    method.setup()
    out, labels, _ = _step(trainer)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    m_a, m_v = shapley_logits(*method.padded_logits(out))
    k = agm_coefficients({"audio": agm_score(m_a, labels), "visual": agm_score(m_v, labels)},
                         {"audio": 0.0, "visual": 0.0}, 0.5)
    method.after_backward(out, labels, epoch=0)
    clipped = any(g.abs().max() > 5 for n, g in before.items() if n.startswith("fusion."))
    assert not clipped, "the hand-made batch should not trigger the head-gradient clip"
    for m in ("audio", "visual"):
        for name, p in model.encoder_parameters(m):
            expected = before[name] * (k[m] if p.dim() != 1 else 1.0)
            assert torch.allclose(p.grad, expected, rtol=1e-5, atol=1e-8), name
    assert method.iteration == 1
    assert method.running["audio"] == pytest.approx(agm_score(m_a, labels))
