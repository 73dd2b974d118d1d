"""LFM's balance weight (fitted and learned), alignment loss and held-out clips, pinned on tiny tensors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_method_contract import assert_resumes_exactly
from torch import nn

from drltune.errors import DrltuneError
from drltune.methods.lfm import (
    alignment,
    alpha_hypergrad,
    fitted_alpha_cls,
    fitted_time,
    lfm_loss,
    updated_alpha_align,
)
from drltune.models import ModelOutput
from drltune.resolve import resolve
from drltune.train import Trainer

# a_cls of the released polynomial at these epochs (docs/methods.md §6e; ../shared/METHODS.md §6c.2)
FITTED = {0: 0.20462, 10: 0.24776, 20: 0.30089, 50: 0.43668, 70: 0.48401, 100: 0.53916, 150: 0.82131,
          183: 1.01054, 199: 0.91599}


@pytest.mark.parametrize("epoch", sorted(FITTED))
def test_fitted_schedule_is_the_released_polynomial(epoch):
    assert fitted_alpha_cls(epoch) == pytest.approx(FITTED[epoch], abs=1e-5)


def test_fitted_schedule_holds_after_its_200_epochs_and_stretches_on_the_run_clock():
    assert fitted_alpha_cls(250) == pytest.approx(FITTED[199], abs=1e-5)  # the raw polynomial gives -2.31
    assert fitted_time(37, 90, "epoch") == 37
    assert fitted_time(0, 30, "run") == 0 and fitted_time(29, 30, "run") == 199
    assert fitted_time(10, 21, "run") == pytest.approx(99.5)


def _code_alignment(za, zv):
    """The official Alignment(), written as it is (p.log() of a softmax)."""
    p, q = F.softmax(za, dim=-1), F.softmax(zv, dim=-1)
    m = 0.5 * p + 0.5 * q
    return 0.5 * (F.kl_div(p.log(), m, reduction="batchmean") + F.kl_div(q.log(), m, reduction="batchmean"))


def test_alignment_code_form_matches_the_released_function_and_js_is_the_other_direction():
    za = torch.tensor([[1.0, 0.0, -1.0], [0.5, 2.0, 0.0]])
    zv = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    assert alignment(za, zv, "code").item() == pytest.approx(_code_alignment(za, zv).item(), rel=1e-6)
    p, q = za.softmax(1), zv.softmax(1)
    m = (p + q) / 2
    js = 0.5 * ((p * (p / m).log()).sum(1) + (q * (q / m).log()).sum(1)).mean()
    assert alignment(za, zv, "js").item() == pytest.approx(js.item(), rel=1e-6)
    assert alignment(za, zv, "js").item() != pytest.approx(alignment(za, zv, "code").item(), rel=1e-3)
    assert alignment(za, za, "code").item() == pytest.approx(0.0, abs=1e-7)


def test_alignment_stays_finite_where_the_released_log_of_a_softmax_is_minus_infinity():
    za, zv = torch.tensor([[200.0, -200.0]]), torch.tensor([[-200.0, 200.0]])
    assert not torch.isfinite(_code_alignment(za, zv))
    value = alignment(za, zv, "code")
    assert torch.isfinite(value) and value.item() > 100  # KL(m||p) ~ 0.5 * 400


def test_loss_is_twice_the_weighted_sum():
    za, zv = torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([[0.0, 1.0], [1.0, 0.0]])
    labels = torch.tensor([0, 1])
    fused = 0.5 * za + 0.5 * zv
    loss, cls, align = lfm_loss(fused, za, zv, labels, 0.3)
    assert cls.item() == pytest.approx(F.cross_entropy(fused, labels).item())
    assert loss.item() == pytest.approx(2 * (0.3 * cls.item() + 0.7 * align.item()))


def _logits(u, wa, wv, audio, visual):
    return torch.tanh(audio @ u.T) @ wa.T, visual @ wv.T


class TwoHeads(nn.Module):
    """A tanh 'encoder' u (the first parameter, as the audio conv1 weight is) and linear heads:
    small enough for an explicit Hessian. (The mean over a linear head's weight alone is 0, since
    softmax logits are shift invariant, so the first tensor must sit before the head.)"""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.u = nn.Parameter(torch.randn(2, 2))
        self.wa = nn.Parameter(torch.randn(3, 2))
        self.wv = nn.Parameter(torch.randn(3, 2))

    def forward(self, audio, visual):
        za, zv = _logits(self.u, self.wa, self.wv, audio, visual)
        return ModelOutput(0.5 * za + 0.5 * zv, audio, visual)

    def unimodal_logits(self, out):
        return _logits(self.u, self.wa, self.wv, out.feat_a, out.feat_v)


@pytest.mark.parametrize("scope", ["first", "all"])
def test_hypergradient_is_the_hessian_of_the_total_loss_times_the_cls_gradient(scope):
    torch.manual_seed(0)
    audio, visual, labels = torch.randn(4, 2), torch.randn(4, 2), torch.tensor([0, 1, 2, 1])
    model, a_cls = TwoHeads(), 0.3
    got = alpha_hypergrad(model, audio, visual, labels, a_cls, "code", scope)

    def total(flat, cls_only=False):
        za, zv = _logits(flat[:4].view(2, 2), flat[4:10].view(3, 2), flat[10:].view(3, 2), audio, visual)
        cls = F.cross_entropy(0.5 * za + 0.5 * zv, labels)
        return cls if cls_only else a_cls * cls + (1 - a_cls) * _code_alignment(za, zv)

    flat = torch.cat([p.detach().flatten() for p in (model.u, model.wa, model.wv)])
    hessian = torch.autograd.functional.hessian(total, flat)
    g_cls = torch.autograd.functional.jacobian(lambda f: total(f, True), flat)
    hvp = hessian @ g_cls
    expected = hvp[:4].mean() if scope == "first" else hvp.mean()
    assert abs(expected.item()) > 1e-3
    assert got == pytest.approx(expected.item(), rel=1e-4)


def test_learned_weight_steps_against_the_hypergradient_within_its_clip():
    assert updated_alpha_align(0.5, 2.0, 0.1) == pytest.approx(0.3)
    assert updated_alpha_align(0.5, -100.0, 0.1) == 0.95
    assert updated_alpha_align(0.1, 100.0, 0.1) == 0.05


def test_learned_schedule_holds_clips_out_of_training_and_moves_the_weight(tiny_config):
    cfg = tiny_config(epochs=3, method="lfm", params={"schedule": "learned", "alpha_lr": 1e-3, "alpha_lr_halving": 2})
    trainer = Trainer(cfg)
    full = trainer.data.train
    result = trainer.fit()
    method = trainer.method
    assert len(trainer.data.train) == len(full) - 16 and len(method.holdout_batch) == 8
    held = np.setdiff1d(np.arange(len(full)), trainer.data.train.audio.index)
    assert len(held) == 16 and set(method.holdout_batch) <= set(held)
    align = 0.95
    for record in result.history:  # each epoch: one clipped step against its hypergradient, lr halving
        align = updated_alpha_align(align, record["lfm_hypergrad"], 1e-3 / 2 ** (record["epoch"] // 2))
        assert record["lfm_alpha_cls"] == pytest.approx(1 - align, abs=1e-12)
    assert result.history[0]["lfm_alpha_cls"] > 0.06, result.history[0]  # it moved from 1 - 0.95
    assert len(full) == cfg.dataset_params["n_train"]  # the (shareable) bundle itself was never changed


def test_learned_schedule_resumes_exactly(tiny_config, tmp_path):
    cfg = tiny_config(epochs=3, method="lfm", params={"schedule": "learned", "alpha_lr": 10.0})
    whole = Trainer(cfg)
    assert_resumes_exactly(cfg, tmp_path, whole, whole.fit())


def test_fitted_schedule_sets_the_epoch_weight(tiny_config):
    result = Trainer(tiny_config(epochs=3, method="lfm", params={"fitted_clock": "run"})).fit()
    assert [r["lfm_alpha_cls"] for r in result.history] == pytest.approx(
        [fitted_alpha_cls(0), fitted_alpha_cls(99.5), fitted_alpha_cls(199)])
    assert all(r["lfm_hypergrad"] is None for r in result.history)


def test_the_fused_head_needs_unimodal_logits(tiny_config):
    with pytest.raises(DrltuneError, match="params.head: fusion needs unimodal logits"):
        resolve(tiny_config(method="lfm", fusion="gated", params={"head": "fusion"}))
    resolve(tiny_config(method="lfm", fusion="sum", params={"head": "fusion"}))


@pytest.mark.parametrize("params", [{}, {"head": "fusion"}])
def test_trains_above_chance_on_the_built_in_data(tiny_config, params):
    data = {"n_train": 120, "n_val": 48, "n_test": 48, "audio_freq": 16, "audio_time": 16, "image_size": 16}
    result = Trainer(tiny_config(epochs=8, lr=0.02, method="lfm", params=params, dataset_params=data)).fit()
    assert result.test_acc > 0.3, result.test_acc  # chance is 1/6


def test_the_learned_step_runs_in_train_mode_at_epoch_0_only_as_the_code(tiny_config):
    trainer = Trainer(tiny_config(method="lfm", params={"schedule": "learned"}))
    trainer.method.setup()
    stats = trainer.model.audio_net.net.bn1.running_mean
    before = stats.clone()
    trainer.method.learn_alpha(1)  # eval mode (the code's val() left it there): statistics stay
    assert torch.equal(stats, before) and trainer.model.training
    trainer.method.learn_alpha(0)  # the fresh model is in train mode: the 8 clips move them
    assert not torch.equal(stats, before)
