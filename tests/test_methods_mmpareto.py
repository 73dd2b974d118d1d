"""MMPareto's weights, gradient combination and training step, pinned on hand-made tensors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.methods.mmpareto import combined_grad, min_norm_weights, pareto_weights
from drltune.train import Trainer


def test_agreeing_gradients_are_averaged():
    k_mm, k_uni, cos = pareto_weights([torch.tensor([1.0, 0.0])], [torch.tensor([1.0, 1.0])])
    assert (k_mm, k_uni) == (0.5, 0.5) and cos == pytest.approx(2 ** -0.5)


def test_conflicting_gradients_take_the_min_norm_point():
    g1, g2 = torch.tensor([2.0, 0.0]), torch.tensor([-1.0, 1.0])  # cosine < 0
    k_mm, k_uni, cos = pareto_weights([g1[:1], g1[1:]], [g2[:1], g2[1:]])  # per-tensor lists
    assert cos < 0
    # min over c of |c g1 + (1-c) g2|^2: c = (g2.g2 - g1.g2) / |g1 - g2|^2 = (2 + 2) / 10
    assert k_mm == pytest.approx(0.4) and k_uni == pytest.approx(0.6)
    point = k_mm * g1 + k_uni * g2
    assert torch.dot(point, g1 - g2).item() == pytest.approx(0.0, abs=1e-6)  # orthogonal: the minimum
    # the official solver's end points
    assert min_norm_weights(1.0, 1.0, 4.0) == pytest.approx((0.999, 0.001))
    assert min_norm_weights(4.0, 1.0, 1.0) == pytest.approx((0.001, 0.999))


def test_combined_grad_lifts_to_the_summed_norm_and_scales_by_gamma():
    g_mm, g_uni = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    small_sum = torch.tensor([0.1, 0.0])
    # 2 * (0.5 g_mm + 0.5 g_uni) = (1, 1), longer than g_sum: only gamma applies
    assert torch.allclose(combined_grad(g_mm, g_uni, small_sum, 0.5, 0.5, 1.5), torch.tensor([1.5, 1.5]))
    big_sum = torch.tensor([3.0, 4.0])  # norm 5 > sqrt(2): lifted to norm 5, then x gamma
    lifted = combined_grad(g_mm, g_uni, big_sum, 0.5, 0.5, 1.5)
    assert lifted.norm().item() == pytest.approx(5 * 1.5) and lifted[0] == pytest.approx(lifted[1])
    assert torch.allclose(combined_grad(g_mm, g_uni, big_sum, 0.5, 0.5, 1.5, rescale=False), torch.tensor([1.5, 1.5]))


def test_training_step_replaces_encoder_grads_and_keeps_head_grads(tiny_config):
    trainer = Trainer(tiny_config(method="mmpareto"))
    model, method = trainer.model, trainer.method
    assert {"audio", "visual"} == set(model.unimodal_heads.keys())
    head_params = {id(p) for p in model.unimodal_heads.parameters()}
    assert head_params <= {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    model.train()
    out = model(audio, visual)
    loss = method.loss(out, labels, 0)
    # what the rule must produce, from separate gradients of each loss
    loss_mm = F.cross_entropy(out.logits, labels)
    loss_a = F.cross_entropy(model.unimodal_heads["audio"](out.feat_a), labels)
    loss_v = F.cross_entropy(model.unimodal_heads["visual"](out.feat_v), labels)
    assert loss.item() == pytest.approx((loss_mm + loss_a + loss_v).item())
    expected = {}
    for m, loss_uni in (("audio", loss_a), ("visual", loss_v)):
        params = [p for _, p in model.encoder_parameters(m)]
        g_mm = torch.autograd.grad(loss_mm, params, retain_graph=True)
        g_uni = torch.autograd.grad(loss_uni, params, retain_graph=True)
        g_sum = torch.autograd.grad(loss_mm + loss_a + loss_v, params, retain_graph=True)
        k_mm, k_uni, _ = pareto_weights(list(g_mm), list(g_uni))
        expected[m] = [combined_grad(a, b, s, k_mm, k_uni, 1.5) for a, b, s in zip(g_mm, g_uni, g_sum)]
    model.zero_grad()
    loss.backward()
    head_before = {n: p.grad.clone() for n, p in model.named_parameters() if not n.startswith(("audio_net.", "visual_net."))}
    method.after_backward(out, labels, 0)
    for m in ("audio", "visual"):
        for (name, p), want in zip(model.encoder_parameters(m), expected[m]):
            assert torch.allclose(p.grad, want, rtol=1e-4, atol=1e-7), name
    for name, p in model.named_parameters():
        if name in head_before:  # fused and unimodal heads: the summed loss's gradient, untouched
            assert torch.equal(p.grad, head_before[name]), name
    record = method.on_epoch_end(0)
    assert 0.0 <= record["pareto_share_audio"] <= 1.0 and -1.0 <= record["cos_audio"] <= 1.0
