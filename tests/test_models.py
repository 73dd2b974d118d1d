"""Encoders and fusion heads: shapes, gradients, and the papers' definitions."""
from __future__ import annotations

import pytest
import torch

from drltune.models import FUSIONS, AVClassifier
from drltune.models.encoders import AudioEncoder, VisualEncoder


def test_encoders_pool_to_eight_times_width():
    a = AudioEncoder(width=4)(torch.randn(3, 1, 32, 24))
    v = VisualEncoder(width=4)(torch.randn(3, 2, 3, 32, 32))
    assert a.shape == (3, 32) and v.shape == (3, 32)


def test_visual_encoder_averages_frames_jointly_over_time_and_space():
    enc = VisualEncoder(width=4).eval()
    clip = torch.randn(1, 2, 3, 32, 32)
    maps = enc.net(clip.flatten(0, 1))
    assert torch.allclose(enc(clip), maps.mean(dim=(0, 2, 3)).unsqueeze(0), atol=1e-6)


def test_full_width_is_the_papers_resnet18():
    enc = AudioEncoder(width=64)
    assert enc.out_dim == 512
    n_params = sum(p.numel() for p in enc.parameters())
    assert 11_000_000 < n_params < 11_300_000  # torchvision resnet18 minus fc, 1-channel conv1


@pytest.mark.parametrize("name", FUSIONS.names())
def test_fusion_shapes_and_gradients(name):
    torch.manual_seed(0)
    fusion = FUSIONS.get(name)(16, 6)
    a = torch.randn(5, 16, requires_grad=True)
    v = torch.randn(5, 16, requires_grad=True)
    logits = fusion(a, v)
    assert logits.shape == (5, 6)
    logits.square().sum().backward()
    assert a.grad is not None and a.grad.abs().sum() > 0
    assert v.grad is not None and v.grad.abs().sum() > 0
    for pname, p in fusion.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_concat_unimodal_logits_are_weight_halves_with_half_bias():
    fusion = FUSIONS.get("concat")(4, 3)
    a, v = torch.randn(2, 4), torch.randn(2, 4)
    out_a, out_v = fusion.unimodal_logits(a, v)
    assert torch.allclose(out_a + out_v, fusion(a, v), atol=1e-6)
    w, b = fusion.fc_out.weight, fusion.fc_out.bias
    assert torch.allclose(out_a, a @ w[:, :4].T + b / 2)


def test_film_and_gated_follow_the_ogm_definitions():
    a, v = torch.randn(2, 4), torch.randn(2, 4)
    film = FUSIONS.get("film")(4, 3)
    gamma, beta = film.fc(a).split(4, dim=1)
    assert torch.allclose(film(a, v), film.fc_out(gamma * v + beta))
    gated = FUSIONS.get("gated")(4, 3)
    expected = gated.fc_out(torch.sigmoid(gated.fc_x(a)) * gated.fc_y(v))
    assert torch.allclose(gated(a, v), expected)


@pytest.mark.parametrize("fusion", ["film", "gated"])
def test_model_unimodal_logits_fall_back_to_zero_padding(fusion):
    model = AVClassifier(6, fusion, width=4).eval()
    out = model(torch.randn(2, 1, 16, 16), torch.randn(2, 1, 3, 16, 16))
    la, lv = model.unimodal_logits(out)
    assert torch.allclose(la, model.fusion(out.feat_a, torch.zeros_like(out.feat_v)))
    assert torch.allclose(lv, model.fusion(torch.zeros_like(out.feat_a), out.feat_v))


def test_unimodal_model_skips_the_other_encoder():
    model = AVClassifier(6, "concat", width=4, modality="visual")
    out = model(torch.randn(2, 1, 16, 16), torch.randn(2, 1, 3, 16, 16))
    assert torch.count_nonzero(out.feat_a) == 0
    out.logits.sum().backward()
    assert all(p.grad is None for p in model.audio_net.parameters())
