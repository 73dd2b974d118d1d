"""PMR's prototypes, prototype logits, coefficient and loss, pinned on hand-made tensors."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from drltune.data.batches import to_device_batch
from drltune.methods.pmr import class_means, ema, pmr_coefficients, prototype_logits
from drltune.models.classifier import ModelOutput
from drltune.train import Trainer


def test_prototypes_are_class_means_and_absent_classes_keep_the_old_one():
    feats = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0]])
    labels = torch.tensor([0, 0, 2])
    old = torch.full((3, 2), -7.0)
    protos = class_means(feats, labels, 3, old)
    assert torch.equal(protos, torch.tensor([[2.0, 1.0], [-7.0, -7.0], [0.0, 5.0]]))
    assert torch.allclose(ema(protos, old, 0.25), 0.75 * protos + 0.25 * old)


def test_prototype_logits_are_negative_euclidean_distances():
    protos = torch.tensor([[3.0, 4.0], [0.0, 1.0]])
    logits = prototype_logits(torch.tensor([[0.0, 0.0], [3.0, 5.0]]), protos)
    assert torch.allclose(logits, torch.tensor([[-5.0, -1.0], [-1.0, -5.0]]))


def test_coefficient_goes_to_the_weaker_modality_only():
    assert pmr_coefficients(2.0, 1.5) == (0.0, 1.5)  # audio dominant: visual gets alpha
    assert pmr_coefficients(0.5, 1.5) == (1.5, 0.0)
    assert pmr_coefficients(1.0, 1.5) == (0.0, 0.0)
    assert pmr_coefficients(3.0, 0.5, "continuous") == pytest.approx((0.0, 0.5 * 2.0))
    assert pmr_coefficients(0.25, 0.5, "continuous") == pytest.approx((0.5 * 3.0, 0.0))


def _method(tiny_config, **params):
    trainer = Trainer(tiny_config(method="pmr", params=params))
    trainer.method.setup()
    return trainer, trainer.method


def test_loss_adds_the_prototype_ce_of_the_weaker_modality(tiny_config):
    _, method = _method(tiny_config, alpha=2.0, entropy_weight=0.1, entropy_ends=0)
    method.proto_a = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    method.proto_v = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    labels = torch.tensor([0, 1])
    feat_a = torch.tensor([[0.0, 0.0], [10.0, 0.0]])  # audio sits on its prototypes: dominant
    feat_v = torch.tensor([[0.0, 0.5], [0.0, 0.5]])  # visual halfway between: scores 0.5 each
    fused = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    out = ModelOutput(fused, feat_a, feat_v)
    # audio's prototype logits would be [[0, -10], [-10, 0]]: dominant, so no PCE_a term
    pl_v = torch.tensor([[-0.5, -0.5], [-0.5, -0.5]])
    ce = F.cross_entropy(fused, labels)
    # later than entropy_ends: CE + alpha * PCE_v only
    assert method.loss(out, labels, epoch=1).item() == pytest.approx(
        (ce + 2.0 * F.cross_entropy(pl_v, labels)).item(), rel=1e-5)
    # epoch 0: minus 0.1 x the dominant (audio) prototype entropy, each row softmax([0, -10])
    p = 1 / (1 + math.exp(-10))
    entropy = -(p * math.log(p) + (1 - p) * math.log(1 - p))
    expected = ce + 2.0 * F.cross_entropy(pl_v, labels) - 0.1 * entropy
    assert method.loss(out, labels, epoch=0).item() == pytest.approx(expected.item(), rel=1e-5)
    record = method.means.pop()  # what on_epoch_end reports
    assert record["pmr_coeff_visual"] == 2.0 and record["pmr_coeff_audio"] == 0.0
    assert record["pmr_score_ratio"] == pytest.approx(2 / (1 + math.exp(-10)), rel=1e-5)


def test_outside_the_window_the_loss_is_plain_ce(tiny_config):
    _, method = _method(tiny_config, modulation_starts=0, modulation_ends=0)
    out = ModelOutput(torch.randn(4, 6, requires_grad=True), torch.randn(4, 32), torch.randn(4, 32))
    labels = torch.tensor([0, 1, 2, 3])
    assert torch.equal(method.loss(out, labels, epoch=1), F.cross_entropy(out.logits, labels))


def test_prototypes_average_the_first_fraction_of_shuffled_train_batches(tiny_config):
    trainer, method = _method(tiny_config, proto_fraction=0.5)  # 60 clips / 16 -> 4 batches -> 2 used
    gen = torch.Generator().manual_seed(trainer.cfg.seed + 7919)
    rows = [r for _, r in zip(range(2), trainer.data.train.batches(16, shuffle=True, generator=gen))]
    audio, visual, labels = to_device_batch(trainer.data.train, torch.cat([torch.as_tensor(r) for r in rows]).numpy(),
                                            trainer.device, False, None)
    trainer.model.eval()
    with torch.no_grad():
        out = trainer.model(audio, visual)
    for c in labels.unique():
        assert torch.allclose(method.proto_a[c], out.feat_a[labels == c].mean(0), atol=1e-5)
        assert torch.allclose(method.proto_v[c], out.feat_v[labels == c].mean(0), atol=1e-5)


def _fresh(method, old):
    """What the next prototype computation will give, without consuming the method's generators."""
    state = method.shuffle_gen.get_state(), method.augment_gen.get_state()
    fresh, _ = method.compute_prototypes(old, old)
    method.shuffle_gen.set_state(state[0])
    method.augment_gen.set_state(state[1])
    return fresh


def test_prototypes_follow_the_ema_after_epoch_0(tiny_config):
    _, method = _method(tiny_config, momentum_coef=0.25)
    expected0 = _fresh(method, method.proto_a)
    method.on_epoch_end(0)  # the repo passes epoch 0 here: no EMA yet
    assert torch.allclose(method.proto_a, expected0)
    expected1 = 0.75 * _fresh(method, method.proto_a) + 0.25 * method.proto_a
    method.on_epoch_end(1)
    assert torch.allclose(method.proto_a, expected1)
