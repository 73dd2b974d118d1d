"""MLA's fusion weights, head-gradient projector and alternating step, pinned on hand-made tensors."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.methods.mla import (
    SharedHead,
    modality_weights,
    projected_grad,
    projection_alpha,
    update_projector,
)
from drltune.train import Trainer


def _entropy(p: list[float]) -> float:
    return -sum(x * math.log(x) for x in p if x > 0)


def test_batch_entropy_weights_follow_the_official_batch_axis_softmax():
    logits_a = torch.tensor([[3.0, 0.0], [1.0, 0.0]])
    logits_v = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    w_a, w_v = modality_weights(logits_a, logits_v, "batch_entropy")
    # softmax over the batch axis: column 0 of audio is (e^3, e) / (e^3 + e), column 1 is (1/2, 1/2)
    s = math.exp(2) / (math.exp(2) + 1)
    h_a = _entropy([s, 1 - s]) + _entropy([0.5, 0.5])
    h_v = 2 * _entropy([0.5, 0.5])
    expected_a = math.exp(-h_a) / (math.exp(-h_a) + math.exp(-h_v))  # = exp(max H - H_a) / sum
    assert w_a.shape == () and w_a.item() == pytest.approx(expected_a) and w_a + w_v == pytest.approx(1.0)
    assert w_a.item() > 0.5  # the less uncertain modality weighs more


def test_sample_entropy_weights_are_per_sample_and_fixed_weights_are_the_setting():
    logits_a = torch.tensor([[5.0, 0.0], [0.0, 0.0]])  # sure of sample 0, unsure of sample 1
    logits_v = torch.tensor([[0.0, 0.0], [0.0, 5.0]])  # the other way round
    w_a, w_v = modality_weights(logits_a, logits_v, "sample_entropy")
    assert w_a.shape == (2, 1)
    p = math.exp(5) / (math.exp(5) + 1)
    sure = math.exp(-_entropy([p, 1 - p])) / (math.exp(-_entropy([p, 1 - p])) + math.exp(-math.log(2)))
    assert w_a[0, 0].item() == pytest.approx(sure) and w_v[1, 0].item() == pytest.approx(sure)
    assert torch.allclose(w_a + w_v, torch.ones(2, 1))
    w_a, w_v = modality_weights(logits_a, logits_v, "fixed", audio_weight=0.55)
    assert (w_a.item(), w_v.item()) == pytest.approx((0.55, 0.45))


def test_projector_update_divides_element_by_element_and_normalises():
    features = torch.tensor([[1.0, 1.0], [1.0, 3.0]])  # mean r = (1, 2); from P = I, k = r^T
    updated = update_projector(torch.eye(2), features, 0.1)
    # (k k^T)_ij / (0.1 + k_i r_j): k k^T = k r = [[1, 2], [2, 4]]
    raw = torch.tensor([[1 - 1 / 1.1, -2 / 2.1], [-2 / 2.1, 1 - 4 / 4.1]])
    assert torch.allclose(updated, raw / raw.norm())
    assert updated.norm().item() == pytest.approx(1.0)
    textbook = torch.eye(2) - torch.tensor([[1.0, 2.0], [2.0, 4.0]]) / (0.1 + 5.0)  # scalar r k = 5
    assert not torch.allclose(updated, textbook / textbook.norm(), atol=1e-3)


def test_projected_grad_modes_and_alpha_schedule():
    grad = torch.tensor([[1.0, 2.0]])
    projector = torch.tensor([[0.0, 1.0], [1.0, 0.0]])  # swaps the two feature directions
    assert torch.equal(projected_grad(grad, projector, "replace"), torch.tensor([[2.0, 1.0]]))
    assert torch.equal(projected_grad(grad, projector, "add"), torch.tensor([[3.0, 3.0]]))
    assert projection_alpha(0, 10) == pytest.approx(0.1)
    assert projection_alpha(5, 10) == pytest.approx(0.1 ** 1.5)


def test_shared_head_fuses_its_unimodal_logits_and_evaluation_reads_them():
    head = SharedHead(3, 2, "fixed", 0.25)
    a, v = torch.randn(4, 3), torch.randn(4, 3)
    logits_a, logits_v = head.head(a), head.head(v)
    assert torch.allclose(head(a, v), 0.25 * logits_a + 0.75 * logits_v)
    for pair in (head.probe_logits(a, v), head.unimodal_logits(a, v), head.auxiliary_logits(a, v)):
        assert torch.equal(pair[0], logits_a) and torch.equal(pair[1], logits_v)  # not the zero-padded fusion


def test_one_batch_is_an_audio_step_then_a_visual_step_through_the_projected_shared_head(tiny_config):
    lr = 0.05
    trainer = Trainer(tiny_config(method="mla", optimizer="sgd", lr=lr, momentum=0.0, weight_decay=0.0,
                                  fusion="gated", params={"head_projection": "add"}))
    model, method = trainer.model, trainer.method
    assert type(model.fusion) is SharedHead and model.fusion.head.in_features == model.audio_net.out_dim
    method.setup()
    method.updates = 1  # past the run's first step, so both steps are projected
    steps = trainer.steps_per_epoch()
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    ref = copy.deepcopy(model).train()
    model.train()
    loss, fused = method.train_step(audio, visual, labels, 0, 3)

    # by hand: each modality in turn, its CE through the shared head, the head weight's gradient
    # g + g P^T with P updated from that batch, then plain SGD on the parameters that have a gradient
    projector, alpha = torch.eye(ref.audio_net.out_dim), 0.1 ** (3 / steps + 1)
    losses = []
    for encoder, x in ((ref.audio_net, audio), (ref.visual_net, visual)):
        feats = encoder(x)
        step_loss = F.cross_entropy(ref.fusion.head(feats), labels)
        params = [*encoder.parameters(), *ref.fusion.head.parameters()]
        grads = torch.autograd.grad(step_loss, params)
        r = feats.detach().mean(0, keepdim=True)
        k = projector @ r.T
        projector = projector - (k @ k.T) / (alpha + k @ r)
        projector = projector / projector.norm()
        weight_grad = grads[-2] + grads[-2] @ projector.T
        with torch.no_grad():
            for p, g in zip(params, [*grads[:-2], weight_grad, grads[-1]]):
                p -= lr * g
        losses.append(step_loss.item())
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        assert torch.allclose(p, q, atol=1e-6), name
    assert torch.allclose(method.projector, projector, atol=1e-6)
    assert method.updates == 3 and loss == pytest.approx(sum(losses) / 2)
    assert fused.shape == (16, trainer.data.num_classes)
    assert all(p.grad is None for p in model.parameters())  # nothing carries into the next batch


def test_the_runs_first_step_is_not_projected(tiny_config):
    trainer = Trainer(tiny_config(method="mla", params={"head_projection": "replace"}))
    trainer.method.setup()
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    trainer.model.train()
    before = trainer.method.projector.clone()
    trainer.method._project_head_grad(torch.ones(16, trainer.model.audio_net.out_dim), 0)
    assert torch.equal(trainer.method.projector, before)  # updates == 0: untouched
    trainer.method.train_step(audio, visual, labels, 0, 0)
    assert not torch.equal(trainer.method.projector, before)  # the visual step (the second) was projected
