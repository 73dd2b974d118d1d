"""InfoReg's window signal, gate and proximal pull, pinned on hand-made tensors; it trains above chance."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drltune.config import TrialConfig
from drltune.data.batches import to_device_batch
from drltune.methods.inforeg import pull_towards_, regulation_strengths, window_signal
from drltune.train import Trainer

ABOVE_CHANCE_DATA = {"n_train": 240, "n_val": 96, "n_test": 96, "audio_freq": 16, "audio_time": 16, "image_size": 16}


def test_window_signal_is_the_relative_growth_of_the_trace_average():
    assert window_signal([], 10) == 1.0  # epoch 0: always inside the window
    # METHODS.md §6c.1: with traces [F0, F1], epoch 2 gives k = F1 / (F0 + F1)
    assert window_signal([2.0, 3.0], 10) == pytest.approx(3.0 / 5.0)
    # after the zero padding is gone: (F_{e-1} - F_{e-1-W}) / sum of the last W traces
    traces = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert window_signal(traces, 3) == pytest.approx((5.0 - 2.0) / (3.0 + 4.0 + 5.0))
    # a flat trace closes the window; a falling one gives k < 0
    assert window_signal([4.0] * 6, 3) == pytest.approx(0.0)
    assert window_signal([5.0, 4.0, 3.0, 2.0], 2) < 0
    assert window_signal([0.0, 0.0], 3) == 0.0  # no gradient at all: no division by zero


def test_only_the_stronger_modality_is_pulled_and_only_inside_the_window():
    # S_a - S_v = 10: beta_a = 0.95 * e^tanh(10) = 2.582 (METHODS.md test value)
    assert regulation_strengths(12.0, 2.0, 1.0, 0.05, 0.95, 0.1) == pytest.approx((2.582, 0.0), abs=1e-3)
    assert regulation_strengths(1.0, 1.5, 1.0, 0.05, 0.95, 0.1) == pytest.approx(
        (0.0, 0.1 * math.exp(math.tanh(0.5))))
    assert regulation_strengths(12.0, 2.0, 0.05, 0.05, 0.95, 0.1) == (0.0, 0.0)  # k at the threshold: outside
    assert regulation_strengths(3.0, 3.0, 1.0, 0.05, 0.95, 0.1) == (0.0, 0.0)  # a tie pulls neither


def test_pull_adds_beta_times_the_distance_to_the_anchor():
    p = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))
    p.grad = torch.tensor([0.1, 0.2, 0.3])
    anchor = torch.tensor([0.0, -1.0, 0.5])
    pull_towards_([p], [anchor], 2.0)
    assert torch.allclose(p.grad, torch.tensor([0.1 + 2.0, 0.2 - 2.0, 0.3]))


def _batch_backward(trainer, epoch):
    model, method = trainer.model, trainer.method
    audio, visual, labels = to_device_batch(trainer.data.train, list(range(16)), trainer.device, False, None)
    model.train()
    out = model(audio, visual)
    loss = method.loss(out, labels, epoch)
    model.zero_grad()
    loss.backward()
    return out, labels, loss


def test_after_backward_pulls_the_leading_encoder_to_its_epoch_start_weights(tiny_config):
    trainer = Trainer(tiny_config(method="inforeg", params={"score": "sum"}))
    method, model = trainer.method, trainer.model
    method.setup()
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    _batch_backward(trainer, epoch=0)
    with torch.no_grad():  # move the weights, as steps within the epoch would
        for p in model.parameters():
            p.add_(0.05)
    out, labels, _ = _batch_backward(trainer, epoch=0)
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    logits_a, logits_v = model.unimodal_logits(out)
    s_a = torch.softmax(logits_a, 1).gather(1, labels.view(-1, 1)).sum().item()
    s_v = torch.softmax(logits_v, 1).gather(1, labels.view(-1, 1)).sum().item()
    beta_a, beta_v = regulation_strengths(s_a, s_v, 1.0, 0.05, 0.95, 0.1)
    assert max(beta_a, beta_v) > 0
    method.after_backward(out, labels, epoch=0)
    for modality, beta in (("audio", beta_a), ("visual", beta_v)):
        for name, p in model.encoder_parameters(modality):
            expected = before[name] + beta * (p.detach() - start[name])  # anchor = the epoch's start
            assert torch.allclose(p.grad, expected, atol=1e-6), name
    for name, p in model.fusion.named_parameters():  # the head is never regularised
        assert torch.equal(p.grad, before[f"fusion.{name}"])
    record = method.on_epoch_end(0)
    assert record["inforeg_k"] == 1.0 and record["inforeg_trace"] > 0


def test_outside_the_prime_learning_window_grads_are_untouched(tiny_config):
    trainer = Trainer(tiny_config(method="inforeg"))
    method, model = trainer.method, trainer.model
    method.setup()
    method.traces = [5.0] * 12  # a flat trace: k = 0 <= threshold
    out, labels, _ = _batch_backward(trainer, epoch=12)
    assert method.k == 0.0
    before = {n: p.grad.clone() for n, p in model.named_parameters()}
    method.after_backward(out, labels, epoch=12)
    assert all(torch.equal(p.grad, before[n]) for n, p in model.named_parameters())
    assert method.on_epoch_end(12)["inforeg_beta_audio"] == 0.0


@pytest.mark.parametrize("unimodal_loss", [True, False])
def test_unimodal_loss_switch_adds_each_head_slices_ce(tiny_config, unimodal_loss):
    trainer = Trainer(tiny_config(method="inforeg", params={"unimodal_loss": unimodal_loss}))
    out, labels, loss = _batch_backward(trainer, epoch=0)
    logits_a, logits_v = trainer.model.unimodal_logits(out)
    fused = F.cross_entropy(out.logits, labels)
    extra = F.cross_entropy(logits_a, labels) + F.cross_entropy(logits_v, labels)
    assert loss.item() == pytest.approx((fused + extra if unimodal_loss else fused).item(), rel=1e-6)


def test_inforeg_trains_above_chance():
    cfg = TrialConfig.from_dict({"epochs": 5, "encoder_width": 4, "batch_size": 16, "optimizer": "adam", "lr": 0.01,
                                 "method": "inforeg", "dataset_params": ABOVE_CHANCE_DATA})
    result = Trainer(cfg).fit()
    chance = 1 / 6
    assert result.best_val_acc > chance + 0.15
    assert result.test_acc > chance + 0.1
    assert any(r["inforeg_beta_audio"] + r["inforeg_beta_visual"] > 0 for r in result.history)
